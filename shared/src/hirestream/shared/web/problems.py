"""RFC 9457 problem details for every error the APIs return.

Validation errors list the offending fields (`errors: [{field, message}]`) without echoing the
submitted values, which may be personal data.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pymongo.errors import ConnectionFailure
from starlette.exceptions import HTTPException as StarletteHTTPException

from hirestream.shared.service_layer.errors import (
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    PreconditionFailed,
    PreconditionRequired,
    UseCaseError,
)
from hirestream.shared.storage.pagination import InvalidCursor

log = structlog.get_logger(__name__)

PROBLEM_JSON = "application/problem+json"
PROBLEM_TYPE_BASE = "https://hirestream.dev/problems"


class Problem(Exception):
    """Raise to answer with a problem document; extra keyword arguments become members."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        title: str | None = None,
        type_: str | None = None,
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.title = title or HTTPStatus(status).phrase
        self.type = type_ or f"{PROBLEM_TYPE_BASE}/{self.title.lower().replace(' ', '-')}"
        self.headers = headers or {}
        self.extensions = extensions


def problem_response(problem: Problem) -> JSONResponse:
    body = {
        "type": problem.type,
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail,
        **problem.extensions,
    }
    return JSONResponse(
        body, status_code=problem.status, media_type=PROBLEM_JSON, headers=problem.headers
    )


# The status of each use-case error. InvalidRequest is a 422 without the validation title: the
# request was well-formed, and the problem names the field.
USE_CASE_STATUS: dict[type[UseCaseError], int] = {
    NotFound: 404,
    Forbidden: 403,
    Conflict: 409,
    PreconditionFailed: 412,
    PreconditionRequired: 428,
    InvalidRequest: 422,
}


def use_case_problem(error: UseCaseError) -> Problem:
    status = next((code for kind, code in USE_CASE_STATUS.items() if isinstance(error, kind)), 500)
    headers = {"Retry-After": str(error.retry_after_s)} if error.retry_after_s else None
    return Problem(status, error.detail, headers=headers, **error.extensions)


def _field_name(location: tuple[Any, ...]) -> str:
    # ("body", "salary", "min") -> "salary.min"; ("query", "limit") -> "limit"
    parts = [str(part) for part in location]
    if parts and parts[0] in {"body", "query", "path", "header"}:
        parts = parts[1:]
    return ".".join(parts) or "body"


def validation_problem(errors: list[dict[str, Any]]) -> Problem:
    fields = [
        {"field": _field_name(tuple(err.get("loc", ()))), "message": err.get("msg", "invalid")}
        for err in errors
    ]
    names = ", ".join(dict.fromkeys(item["field"] for item in fields))
    return Problem(
        422,
        f"invalid fields: {names}",
        title="Validation failed",
        type_=f"{PROBLEM_TYPE_BASE}/validation",
        errors=fields,
    )


def install_problem_handlers(app: FastAPI) -> None:
    async def on_problem(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Problem)
        return problem_response(exc)

    async def on_validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return problem_response(validation_problem(list(exc.errors())))

    async def on_http(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return problem_response(
            Problem(exc.status_code, str(exc.detail), headers=dict(exc.headers or {}))
        )

    async def on_database_down(_: Request, exc: Exception) -> JSONResponse:
        return problem_response(
            Problem(
                503,
                "the database is unavailable; try again shortly",
                title="Service Unavailable",
                headers={"Retry-After": "5"},
            )
        )

    async def on_use_case_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, UseCaseError)
        return problem_response(use_case_problem(exc))

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(UseCaseError, on_use_case_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)

    async def on_invalid_cursor(_: Request, exc: Exception) -> JSONResponse:
        return problem_response(
            Problem(
                422,
                "cursor is not one this service returned",
                errors=[{"field": "cursor", "message": "not a cursor of this list"}],
            )
        )

    async def on_unexpected(_: Request, exc: Exception) -> JSONResponse:
        # A bug: the caller learns nothing of it but the request id; the log has the rest.
        log.error("request.failed", error=type(exc).__name__, exc_info=exc)
        return problem_response(
            Problem(500, "an unexpected error; quote the X-Request-ID when reporting it")
        )

    app.add_exception_handler(ConnectionFailure, on_database_down)
    app.add_exception_handler(Exception, on_unexpected)
    app.add_exception_handler(InvalidCursor, on_invalid_cursor)

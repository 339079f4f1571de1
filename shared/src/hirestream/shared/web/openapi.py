"""What the OpenAPI documents say about responses: each route's statuses, as problem documents
(`application/problem+json`) with a schema, the headers they carry, and readable operation ids.

Routes list their statuses with `route_responses`, which adds what the mechanisms around them
can answer: 401 from the token check, 413 and 429 from the request guard on writes, 503 when
the database is down. `COMMON_RESPONSES` holds what any request may get whatever the route
(the guard's 413 and 422, the catch-all 500); `complete_openapi` adds the shared schemas and
headers once the document is generated.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from fastapi.routing import APIRoute

from hirestream.shared.web.problems import PROBLEM_JSON

Responses = dict[int | str, dict[str, Any]]

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "An RFC 9457 problem document. Members other than these may be added.",
    "type": "object",
    "properties": {
        "type": {"type": "string", "description": "a URI naming the kind of problem"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string", "description": "what went wrong with this request"},
        "errors": {
            "type": "array",
            "description": "the fields at fault, when the request was invalid",
            "items": {"$ref": "#/components/schemas/InvalidField"},
        },
        "allowed_moves": {
            "type": "array",
            "items": {"type": "string"},
            "description": "an illegal status move: the moves allowed from the current status",
        },
        "checks": {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "description": "readiness: each dependency and `ok` or why it failed",
        },
    },
    "required": ["type", "title", "status", "detail"],
    "additionalProperties": True,
}
INVALID_FIELD_SCHEMA: dict[str, Any] = {
    "title": "InvalidField",
    "description": "One invalid field; the value sent is never echoed (it may be personal data).",
    "type": "object",
    "properties": {
        "field": {"type": "string", "description": "dotted path, e.g. `salary.min`"},
        "message": {"type": "string"},
    },
    "required": ["field", "message"],
}
SCHEMAS = {"Problem": PROBLEM_SCHEMA, "InvalidField": INVALID_FIELD_SCHEMA}


def _header(description: str, schema: dict[str, Any], *, required: bool = False) -> dict[str, Any]:
    return {"description": description, "required": required, "schema": schema}


ETAG = "ETag"
LOCATION = "Location"
REPLAYED = "Idempotent-Replayed"
RETRY_AFTER = "Retry-After"
HEADERS: dict[str, dict[str, Any]] = {
    ETAG: _header(
        'the posting\'s version, `"<version>"`: send it back in If-Match to change it',
        {"type": "string", "pattern": '^"[0-9]+"$'},
        required=True,
    ),
    LOCATION: _header("the path of the created resource", {"type": "string"}, required=True),
    REPLAYED: _header(
        "`true` when this is the first response again, for a retry with the same "
        "Idempotency-Key; absent otherwise",
        {"type": "string", "enum": ["true"]},
    ),
    RETRY_AFTER: _header("seconds to wait before trying again", {"type": "string"}),
    "WWW-Authenticate": _header("the scheme to authenticate with: `Bearer`", {"type": "string"}),
    "X-Request-ID": _header(
        "the request's correlation id: the caller's when it sent a safe one, else a new one; "
        "the events the request causes carry it as `correlationid`",
        {"type": "string"},
        required=True,
    ),
}
# Headers an error status always or sometimes carries, whatever the route.
_ERROR_HEADERS: dict[int, tuple[str, ...]] = {
    401: ("WWW-Authenticate",),
    429: (RETRY_AFTER,),
    503: (RETRY_AFTER,),
}


def problem(description: str, *headers: str) -> dict[str, Any]:
    """An error response: a problem document, with the headers named."""
    return {
        "description": description,
        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        "headers": {name: HEADERS[name] for name in headers},
    }


GUARD_422 = (
    "the request guard refused it: JSON nested deeper than MAX_JSON_DEPTH, an object key "
    "starting with `$`, or a query parameter name with `$`, `[` or `]`"
)
COMMON_RESPONSES: Responses = {
    413: problem("the body is larger than MAX_BODY_BYTES (whatever the method)"),
    422: problem(GUARD_422),
    500: problem("an unexpected error; the body and X-Request-ID identify it in the logs"),
}
_UNAUTHORIZED = "no bearer token, or one that does not verify (signature, expiry, issuer, audience)"
_TOO_MANY_WRITES = "too many writes from this client (RATE_LIMIT_WRITES); Retry-After says when"
_DATABASE_DOWN = "the database is unreachable; Retry-After says when to try again"


def route_responses(
    refusals: Mapping[int, str] | None = None,
    *,
    success: int = 200,
    success_headers: Iterable[str] = (),
    retry_after: Iterable[int] = (),
    authenticated: bool = True,
    writes: bool = False,
    database: bool = True,
) -> Responses:
    """A route's `responses`: `refusals` are the statuses its own checks and use case answer,
    with why; the rest follows from what the route is (authenticated, a write, a database
    reader). `retry_after` names the refusals that may carry Retry-After. A 422 described here
    says what the route's validation refuses; the guard's reasons are added to it."""
    refusals = dict(refusals or {})
    responses: Responses = {success: {"headers": {name: HEADERS[name] for name in success_headers}}}
    if authenticated:
        responses[401] = problem(_UNAUTHORIZED, "WWW-Authenticate")
    if writes:
        responses[429] = problem(_TOO_MANY_WRITES, RETRY_AFTER)
    if database:
        responses[503] = problem(_DATABASE_DOWN, RETRY_AFTER)
    own_422 = refusals.pop(422, None)
    responses[422] = problem(f"{own_422}; or {GUARD_422}" if own_422 else GUARD_422)
    retry = set(retry_after)
    for status, why in refusals.items():
        responses[status] = problem(why, *((RETRY_AFTER,) if status in retry else ()))
    return dict(sorted(responses.items(), key=lambda item: str(item[0])))


def operation_id(route: APIRoute) -> str:
    """The route function's name (`create_posting`): stable, and what a generated client's
    method is called."""
    return route.name


def complete_openapi(document: dict[str, Any]) -> dict[str, Any]:
    """Add the shared schemas; give every error response that lacks one its problem document
    and headers (routes outside the services' own, such as /readyz), and every response the
    X-Request-ID the correlation middleware sets."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(SCHEMAS)
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            for status, response in operation.get("responses", {}).items():
                code = int(status) if status.isdigit() else 0
                if code >= 400 and "content" not in response:
                    headers = _ERROR_HEADERS.get(code, ())
                    response.update(problem(response["description"], *headers))
                response.setdefault("headers", {})["X-Request-ID"] = HEADERS["X-Request-ID"]
    # FastAPI's validation error schemas describe bodies we never send: every 422 is a Problem.
    for unused in ("HTTPValidationError", "ValidationError"):
        if f'/{unused}"' not in json.dumps(document["paths"]):
            schemas.pop(unused, None)
    return document

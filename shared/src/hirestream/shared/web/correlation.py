"""One correlation id per request, from the caller's `X-Request-ID` (or `traceparent`'s trace
id) when it sends one, else a new one. It is bound into every log line of the request, echoed in
the response, and carried by the events the request causes (`correlationid`)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable

import structlog
from fastapi import FastAPI, Request, Response

REQUEST_ID_HEADER = "X-Request-ID"
# Only ids that are safe to log and to echo: no spaces, quotes or control characters.
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")


def correlation_id_of(request: Request) -> str:
    candidate = request.headers.get(REQUEST_ID_HEADER, "")
    if _SAFE_ID.match(candidate):
        return candidate
    if trace := _TRACEPARENT.match(request.headers.get("traceparent", "")):
        return trace.group(1)
    return f"req-{uuid.uuid4().hex}"


def install_correlation(app: FastAPI) -> None:
    @app.middleware("http")
    async def bind_correlation_id(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        correlation_id = correlation_id_of(request)
        request.state.correlation_id = correlation_id
        with structlog.contextvars.bound_contextvars(correlation_id=correlation_id):
            response = await call_next(request)
        response.headers[REQUEST_ID_HEADER] = correlation_id
        return response

"""One correlation id per request, from the caller's `X-Request-ID` (or `traceparent`'s trace
id) when it sends one, else a new one. It is bound into every log line of the request, echoed in
the response, and carried by the events the request causes (`correlationid`)."""

from __future__ import annotations

import re
import uuid

import structlog
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_HEADER = "X-Request-ID"
# Only ids that are safe to log and to echo: no spaces, quotes or control characters.
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")


def correlation_id_of(headers: Headers) -> str:
    candidate = headers.get(REQUEST_ID_HEADER, "")
    if _SAFE_ID.match(candidate):
        return candidate
    if trace := _TRACEPARENT.match(headers.get("traceparent", "")):
        return trace.group(1)
    return f"req-{uuid.uuid4().hex}"


class CorrelationMiddleware:
    """Plain ASGI, not `@app.middleware("http")`: Starlette's BaseHTTPMiddleware runs the rest
    of the app in a task of its own and streams the response through a memory channel, which
    the profile of POST /applications showed as a large share of the service's CPU per request
    (bench/README.md). The route reads the id as `request.state.correlation_id`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        correlation_id = correlation_id_of(Headers(scope=scope))
        scope.setdefault("state", {})["correlation_id"] = correlation_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = correlation_id
            await send(message)

        with structlog.contextvars.bound_contextvars(correlation_id=correlation_id):
            await self.app(scope, receive, send_with_id)

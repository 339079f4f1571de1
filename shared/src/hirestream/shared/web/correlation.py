"""One correlation id per request, from the caller's `X-Request-ID` (or `traceparent`'s trace
id) when it sends a safe one, else a new one; echoed in the response."""

from __future__ import annotations

import re
import uuid

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import Message, Receive, Scope, Send

from hirestream.shared.correlation import correlated
from hirestream.shared.web.asgi import HttpMiddleware

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


class CorrelationMiddleware(HttpMiddleware):
    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        correlation_id = correlation_id_of(Headers(scope=scope))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = correlation_id
            await send(message)

        with correlated(correlation_id):
            await self.app(scope, receive, send_with_id)

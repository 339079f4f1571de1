"""`/metrics` and the middleware that counts and times every HTTP response."""

from __future__ import annotations

import time
from collections.abc import Callable

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest, start_http_server
from starlette.types import Message, Receive, Scope, Send

from hirestream.shared.metrics import HTTP_LATENCY, HTTP_REQUESTS
from hirestream.shared.web.asgi import HttpMiddleware

UNMATCHED_ROUTE = "<unmatched>"
# Label values come from closed sets, so that no request can add a time series of its own.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "OTHER"


def _route_template(scope: Scope) -> str:
    # The matched route's template (/postings/{posting_id}), never the raw path: ids must not
    # become label values. Included routers nest; the router records the innermost match.
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    return str(template) if template else UNMATCHED_ROUTE


class MetricsMiddleware(HttpMiddleware):
    """A response that never started (the app raised) counts as a 500, which is what the server
    answers then."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        status = 500

        async def send_recording(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_recording)
        finally:
            route = _route_template(scope)
            if route != "/metrics":
                method = scope["method"] if scope["method"] in METHODS else OTHER_METHOD
                HTTP_LATENCY.labels(method, route).observe(time.perf_counter() - started)
                HTTP_REQUESTS.labels(method, route, str(status)).inc()


def serve_metrics(port: int) -> Callable[[], None]:
    """`/metrics` on a port of its own (a thread of prometheus_client's); returns its stop."""
    server, thread = start_http_server(port)

    def stop() -> None:
        server.shutdown()
        thread.join(timeout=5)

    return stop


def install_metrics(app: FastAPI) -> None:
    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(MetricsMiddleware)

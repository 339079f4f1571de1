"""Prometheus metrics every service exposes on `/metrics`.

Defined once here so that the names and labels are the same in all three services.
"""

from __future__ import annotations

import time

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HTTP_REQUESTS = Counter(
    "hirestream_http_requests_total", "HTTP requests answered", ["method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "hirestream_http_request_duration_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
EVENTS_PUBLISHED = Counter(
    "hirestream_events_published_total", "Events acknowledged by Kafka", ["topic"]
)
EVENTS_CONSUMED = Counter(
    "hirestream_events_consumed_total",
    "Events consumed, by outcome (handled, dead_lettered)",
    ["topic", "outcome"],
)

DEAD_LETTERS = Counter(
    "hirestream_dead_letters_total",
    "Records sent to <topic>.dlq, by reason (invalid, transient, handler)",
    ["topic", "reason"],
)
OUTBOX_PENDING = Gauge(
    "hirestream_outbox_pending_documents",
    "Documents whose events wait past the inline relay's grace, as the last sweep found them",
    ["collection"],
)
OUTBOX_OLDEST_AGE = Gauge(
    "hirestream_outbox_oldest_pending_age_seconds",
    "Age of the oldest event waiting past the inline relay's grace (0 when none)",
    ["collection"],
)
CONSUMER_LAG = Gauge(
    "hirestream_consumer_lag_records",
    "Records on the partition not yet consumed by the group",
    ["group", "topic", "partition"],
)
DELIVERY_ATTEMPTS = Counter(
    "hirestream_delivery_attempts_total",
    "Email and webhook delivery attempts, by whether they succeeded",
    ["channel", "ok"],
)
DELIVERIES = Counter(
    "hirestream_deliveries_total",
    "Final outcomes of email and webhook deliveries",
    ["channel", "outcome"],
)

UNMATCHED_ROUTE = "<unmatched>"


def _route_template(scope: Scope) -> str:
    # Label by the matched route's template (/postings/{posting_id}), never the raw path, so
    # that ids do not explode the number of time series. The router records the route it
    # matched in the scope; included routers nest, and the innermost match is the one kept.
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    return str(template) if template else UNMATCHED_ROUTE


class MetricsMiddleware:
    """Counts and times every HTTP response by method, route template and status. Plain ASGI
    for the reason given in correlation.py; a response that never started (the app raised)
    counts as a 500, which is what the server answers then."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
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
                method = scope["method"]
                HTTP_LATENCY.labels(method, route).observe(time.perf_counter() - started)
                HTTP_REQUESTS.labels(method, route, str(status)).inc()


def install_metrics(app: FastAPI) -> None:
    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(MetricsMiddleware)

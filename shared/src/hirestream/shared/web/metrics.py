"""Prometheus metrics every service exposes on `/metrics`.

Defined once here so that the names and labels are the same in all three services.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

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
    "hirestream_outbox_pending_documents", "Documents with events not yet published", ["collection"]
)
OUTBOX_OLDEST_AGE = Gauge(
    "hirestream_outbox_oldest_pending_age_seconds",
    "Age of the oldest event not yet published (0 when none)",
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


def _route_template(request: Request) -> str:
    # Label by the matched route's template (/postings/{posting_id}), never the raw path, so
    # that ids do not explode the number of time series. The router records the route it
    # matched in the scope; included routers nest, and the innermost match is the one kept.
    route = request.scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    return str(template) if template else UNMATCHED_ROUTE


def install_metrics(app: FastAPI) -> None:
    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.middleware("http")
    async def record(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = _route_template(request)
        if route != "/metrics":
            HTTP_LATENCY.labels(request.method, route).observe(time.perf_counter() - started)
            HTTP_REQUESTS.labels(request.method, route, str(response.status_code)).inc()
        return response

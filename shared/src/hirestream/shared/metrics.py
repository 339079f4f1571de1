"""The Prometheus metrics every service exports, defined once so names and labels agree.

Kafka's own figures (records received, processed, published, and their durations) come from
FastStream's Prometheus middleware (`messaging/broker.py`) under the same `hirestream_` prefix.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

METRICS_PREFIX = "hirestream"

HTTP_REQUESTS = Counter(
    "hirestream_http_requests_total", "HTTP requests answered", ["method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "hirestream_http_request_duration_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
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

"""OpenTelemetry tracing, configured only by the standard `OTEL_*` variables.

With no exporter endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT` or `..._TRACES_ENDPOINT`) nothing is
set up: the API's no-op tracer stays in place, no instrumentation is installed, and a span
costs a no-op. With one, spans go over OTLP/HTTP (protobuf) in batches: the HTTP requests
(FastAPI), the database commands (PyMongo), the Kafka publishes and consumes (FastStream's
telemetry middleware), the outbox relay's sends and each delivery attempt. The W3C trace
context travels in the Kafka record headers and in the CloudEvents distributed-tracing
extension (`traceparent`, `tracestate`), and an event's stored context makes its later
publish, and a notification's later delivery, part of the trace of the work that caused it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind

TRACER_NAME = "hirestream"
SUPPORTED_PROTOCOL = "http/protobuf"

_tracer = trace.get_tracer(TRACER_NAME)
# Set once the SDK is installed: until then the helpers below do nothing at all.
_enabled = False


class TracingSettingsError(ValueError):
    """An `OTEL_*` setting this service cannot honour."""


def tracing_configured(environ: Mapping[str, str] = os.environ) -> bool:
    endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    return bool(endpoint) and environ.get("OTEL_SDK_DISABLED", "").lower() != "true"


def configure_tracing(service: str, environ: Mapping[str, str] = os.environ) -> Any | None:
    """Install the SDK's tracer provider when an endpoint is set; returns it (to shut down at
    exit), or None when tracing is off. `service.name` defaults to the service's name."""
    if not tracing_configured(environ):
        return None
    protocol = environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", SUPPORTED_PROTOCOL
    )
    if protocol != SUPPORTED_PROTOCOL:
        raise TracingSettingsError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL: only {SUPPORTED_PROTOCOL} is supported, got {protocol}"
        )
    # Imported here: a service without an endpoint never loads the SDK.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.pymongo import PymongoInstrumentor
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    attributes = {} if environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service}
    provider = TracerProvider(resource=Resource.create(attributes))  # OTEL_TRACES_SAMPLER
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    PymongoInstrumentor().instrument(tracer_provider=provider)
    global _enabled
    _enabled = True
    return provider


def tracing_enabled() -> bool:
    return _enabled


def current_trace_context() -> dict[str, str]:
    """`traceparent` (and `tracestate`) of the span in hand; empty when there is none."""
    carrier: dict[str, str] = {}
    if _enabled:
        propagate.inject(carrier)
    return carrier


@contextmanager
def continued(
    name: str, trace_context: Mapping[str, str], kind: SpanKind = SpanKind.INTERNAL
) -> Iterator[Any]:
    """A span in the trace of stored work (an outbox entry, a notification to deliver): its
    parent is the span that recorded `trace_context`, whenever this runs."""
    if not _enabled:
        yield None
        return
    parent = propagate.extract(dict(trace_context)) if trace_context else None
    with _tracer.start_as_current_span(name, context=parent, kind=kind) as span:
        yield span

"""Tracing is off, at no cost, until an OTLP endpoint is configured; then only OTLP over HTTP."""

from __future__ import annotations

import pytest

from hirestream.shared.tracing import (
    TracingSettingsError,
    configure_tracing,
    continued,
    current_trace_context,
    tracing_configured,
    tracing_enabled,
)


def test_without_an_endpoint_nothing_is_set_up() -> None:
    assert not tracing_configured({})
    assert configure_tracing("postings", {}) is None
    assert not tracing_enabled()
    assert current_trace_context() == {}
    with continued(
        "outbox posting.created", {"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}
    ) as span:
        assert span is None  # not even a no-op span is made


def test_the_sdk_can_be_switched_off_with_an_endpoint_set() -> None:
    environ = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "true"}
    assert not tracing_configured(environ)


def test_another_protocol_than_http_protobuf_stops_start_up_naming_the_variable() -> None:
    environ = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
    }
    with pytest.raises(TracingSettingsError, match="OTEL_EXPORTER_OTLP_PROTOCOL"):
        configure_tracing("postings", environ)

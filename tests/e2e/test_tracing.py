"""One application, traced end to end: the three services as processes export their spans over
OTLP to a real receiver, and the spans of the apply request, its outbox publish, the
notifications' consumption and the confirmation email form one trace, or traces linked by the
batch consumer, from the HTTP request to the email."""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import bearer, candidate_email
from tests.support.factories import posting_body
from tests.support.otlp import ReceivedSpan, Receiver, otlp_receiver
from tests.support.polling import eventually
from tests.support.system import System, running_system

pytestmark = pytest.mark.e2e

RUN = uuid.uuid4().hex[:8]
TRACE = secrets.token_hex(16)
CALLER_SPAN = secrets.token_hex(8)


@pytest.fixture(scope="module")
def traced(
    base_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[System, Receiver]]:
    with otlp_receiver() as (endpoint, receiver):
        tracing = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_TRACES_SAMPLER": "always_on",
            "OTEL_BSP_SCHEDULE_DELAY": "200",  # milliseconds: export soon after each span
        }
        with running_system(
            base_env,
            tmp_path_factory.mktemp("traced-logs"),
            database_suffix=f"traced{RUN}",
            extra_env=tracing,
        ) as system:
            yield system, receiver


async def apply_traced(system: System) -> str:
    """A posting, then an application to it sent with the caller's trace context."""
    employer = bearer("employer", sub=f"emp-{RUN}", org=f"org-{RUN}")
    candidate_id = f"cand-{RUN}"
    async with httpx.AsyncClient(base_url=system.url("postings"), timeout=10) as postings:
        created = await postings.post("/postings", json=posting_body(), headers=employer)
    posting_id = created.json()["posting_id"]
    body = {
        "name": "Grace Traced",
        "email": candidate_email(candidate_id),
        "resume_url": "https://cv.example.com/grace.pdf",
        "consent": {"processing": True},
    }
    headers = {
        **bearer("candidate", sub=candidate_id),
        "traceparent": f"00-{TRACE}-{CALLER_SPAN}-01",
    }
    async with httpx.AsyncClient(base_url=system.url("applications"), timeout=10) as client:

        async def applied() -> httpx.Response | None:
            response = await client.post(
                f"/postings/{posting_id}/applications", json=body, headers=headers
            )
            return None if response.status_code == 404 else response  # not known yet

        response = await eventually(applied, timeout_s=60)
    assert response.status_code == 201, response.text
    application_id: str = response.json()["application_id"]
    return application_id


def ancestors(span: ReceivedSpan, by_id: dict[str, ReceivedSpan]) -> list[ReceivedSpan]:
    chain = []
    while span.parent_span_id in by_id:
        span = by_id[span.parent_span_id]
        chain.append(span)
    return chain


async def test_one_application_is_one_trace_from_the_request_to_the_email(
    traced: tuple[System, Receiver],
) -> None:
    system, receiver = traced
    await apply_traced(system)

    def email_span_in(spans: list[ReceivedSpan]) -> ReceivedSpan | None:
        by_id = {span.span_id: span for span in spans}
        request_trace_ids = {s.span_id for s in spans if s.trace_id == TRACE}
        for span in spans:
            if span.service != "notifications" or span.name != "deliver email":
                continue
            chain = [span, *ancestors(span, by_id)]
            linked = {link for s in chain for link in s.links}
            if span.trace_id == TRACE or any(
                trace_id == TRACE and span_id in request_trace_ids for trace_id, span_id in linked
            ):
                return span
        return None

    async def email_span() -> ReceivedSpan | None:
        return email_span_in(receiver.snapshot())

    email = await eventually(email_span, timeout_s=90, every_s=0.5)
    spans = receiver.snapshot()

    by_id = {span.span_id: span for span in spans}
    in_request = [s for s in spans if s.trace_id == TRACE]
    # The apply request: its server span is the child of the caller's span, and the database
    # write, the outbox's publish and its Kafka send hang below it.
    (server,) = [s for s in in_request if s.parent_span_id == CALLER_SPAN]
    assert server.service == "applications"
    assert "/applications" in server.name
    below_request = [s for s in in_request if server in ancestors(s, by_id)]
    names = {s.name for s in below_request}
    assert "outbox application.submitted" in names
    assert any(name.startswith("application.submitted") for name in names), names
    assert any(
        s.name in {"insert", "applications.insert"} or "insert" in s.name for s in below_request
    )
    # The email's span is in the notifications' consumption of that very event.
    chain = [email, *ancestors(email, by_id)]
    assert any("application.submitted" in s.name for s in chain), [s.name for s in chain]
    assert all(s.service == "notifications" for s in chain)


def test_log_lines_carry_the_trace_and_span_ids_beside_the_correlation_id(
    traced: tuple[System, Receiver],
) -> None:
    system, _ = traced
    lines = [json.loads(line) for line in system.logs().splitlines() if line.startswith("{")]
    handled = [line for line in lines if line.get("event") == "event.handled"]
    assert handled
    assert all({"trace_id", "span_id", "correlation_id"} <= line.keys() for line in handled)

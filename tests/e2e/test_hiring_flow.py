"""The whole hiring flow across the three service processes, and what the logs say about it.

An employer publishes a posting, a candidate with a saved alert is told, applies, and is moved
to screening; everyone concerned hears of each step once. One correlation id travels from each
HTTP request through the events into the consumers' log lines, and no log line of any service
holds the candidate's name or email.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import bearer
from tests.support.factories import posting_body
from tests.support.kafka import read_until
from tests.support.polling import eventually
from tests.support.servers import Servers
from tests.support.system import System, running_system

pytestmark = pytest.mark.e2e

RUN = uuid.uuid4().hex[:8]
CANDIDATE_NAME = f"Grace Hopper-{RUN}"
CANDIDATE_EMAIL = f"grace.{RUN}@example.com"
ORG = f"cobol-{RUN}"


@pytest.fixture(scope="module")
def system(base_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    with running_system(
        base_env, tmp_path_factory.mktemp("flow-logs"), database_suffix=RUN
    ) as running:
        yield running


async def inbox(client: httpx.AsyncClient, headers: dict[str, str]) -> list[dict[str, Any]]:
    response = await client.get("/notifications", headers=headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def test_posting_alert_application_and_status_reach_everyone_once(
    system: System, servers: Servers
) -> None:
    candidate = bearer("candidate", sub=f"cand-{RUN}", email=CANDIDATE_EMAIL)
    employer = bearer("employer", sub=f"emp-{RUN}", org=ORG)
    notifications = httpx.AsyncClient(base_url=system.url("notifications"), timeout=10)
    postings = httpx.AsyncClient(base_url=system.url("postings"), timeout=10)
    applications = httpx.AsyncClient(base_url=system.url("applications"), timeout=10)
    async with notifications, postings, applications:
        alert = await notifications.post(
            "/alerts", json={"skills": ["kafka"], "city": "Chicago"}, headers=candidate
        )
        assert alert.status_code == 201, alert.text

        created = await postings.post(
            "/postings",
            json=posting_body(location={"city": "Chicago", "region": "IL", "country": "US"}),
            headers={**employer, "X-Request-ID": f"req-post-{RUN}"},
        )
        assert created.status_code == 201, created.text
        posting_id = created.json()["posting_id"]

        alerted = await eventually(lambda: inbox(notifications, candidate), timeout_s=60)
        assert [item["kind"] for item in alerted] == ["posting.created"]
        assert alerted[0]["subject"] == posting_id

        async def view_ready() -> httpx.Response | None:
            response = await applications.post(
                f"/postings/{posting_id}/applications",
                json={
                    "name": CANDIDATE_NAME,
                    "email": CANDIDATE_EMAIL,
                    "resume_url": "https://cv.example.com/grace.pdf",
                    "consent": {"processing": True},
                    "skills": ["Python", "Kafka"],
                },
                headers={**candidate, "X-Request-ID": f"req-apply-{RUN}"},
            )
            return response if response.status_code != 404 else None  # read model catching up

        applied = await eventually(view_ready, timeout_s=60)
        assert applied.status_code == 201, applied.text
        application_id = applied.json()["application_id"]
        assert applied.json()["match"]["matched_skills"] == ["python", "kafka"]

        moved = await applications.post(
            f"/applications/{application_id}/status",
            json={"to_status": "screening"},
            headers={**employer, "X-Request-ID": f"req-move-{RUN}"},
        )
        assert moved.status_code == 200, moved.text

        async def candidate_sees_three() -> list[dict[str, Any]] | None:
            items = await inbox(notifications, candidate)
            return items if len(items) >= 3 else None

        items = await eventually(candidate_sees_three, timeout_s=60)
        assert sorted(item["kind"] for item in items) == [
            "application.status_changed",
            "application.submitted",
            "posting.created",
        ]
        employer_items = await eventually(lambda: inbox(notifications, employer), timeout_s=60)
        assert [item["kind"] for item in employer_items] == ["application.submitted"]

    delivered = await read_until(
        servers.kafka_bootstrap,
        ["notification.delivered"],
        lambda rs: sum(f"cand-{RUN}" in r.json()["data"]["recipient"] for r in rs) >= 5,
        timeout_s=60,
    )
    # One per event id: a consumer deduplicates on it (a redelivery may have sent a copy).
    events = {r.json()["id"]: r.json() for r in delivered}
    ours = [e["data"] for e in events.values() if f"cand-{RUN}" in e["data"]["recipient"]]
    # in-app for each of the three events, and email for the two that carry an address
    assert sorted((d["kind"], d["channel"]) for d in ours) == [
        ("application.status_changed", "email"),
        ("application.status_changed", "in_app"),
        ("application.submitted", "email"),
        ("application.submitted", "in_app"),
        ("posting.created", "in_app"),
    ]
    assert {d["outcome"] for d in ours} == {"delivered"}


def test_one_correlation_id_reaches_every_consumer_log_line(system: System) -> None:
    lines = [json.loads(line) for line in system.logs().splitlines() if line.startswith("{")]
    for request_id, consumer in [
        (f"req-post-{RUN}", "applications"),
        (f"req-post-{RUN}", "notifications"),
        (f"req-apply-{RUN}", "notifications"),
        (f"req-move-{RUN}", "notifications"),
    ]:
        handled = [
            line
            for line in lines
            if line.get("service") == consumer
            and line.get("event") == "event.handled"
            and line.get("correlation_id") == request_id
        ]
        assert handled, f"{consumer} logged no handled event for {request_id}"


def test_no_log_line_holds_the_candidates_name_or_email(system: System) -> None:
    logs = system.logs()
    assert f"req-apply-{RUN}" in logs  # the logs are the ones of this run
    assert CANDIDATE_EMAIL not in logs
    assert CANDIDATE_NAME not in logs
    assert CANDIDATE_EMAIL.split("@")[0] not in logs

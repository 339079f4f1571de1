"""A candidate's erasure, end to end across the three service processes.

The candidate has an alert, an application that moved in the workflow, inbox entries, an
email, and a webhook delivery of their application to the employer's receiver. After the
erasure: no collection of any service and no event published since holds their name or
email; the funnel (applications, statuses, history) is unchanged; the request's status is
complete; and replaying the old events does not bring the data back.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from tests.conftest import bearer
from tests.support.factories import posting_body
from tests.support.kafka import produce, read_until
from tests.support.polling import eventually
from tests.support.receivers import webhook_receiver
from tests.support.servers import Servers
from tests.support.system import System, running_system

pytestmark = pytest.mark.e2e

RUN = uuid.uuid4().hex[:8]
NAME = f"Katherine Johnson-{RUN}"
EMAIL = f"katherine.{RUN}@example.org"
CANDIDATE = f"cand-erase-{RUN}"
ORG = f"nasa-{RUN}"
SECRET = "whsec-" + uuid.uuid4().hex
TOPICS = [
    "posting.created",
    "application.submitted",
    "application.status_changed",
    "notification.delivered",
    "candidate.erasure_requested",
    "candidate.erased",
]


@pytest.fixture(scope="module")
def system(base_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    with running_system(
        base_env, tmp_path_factory.mktemp("erasure-logs"), database_suffix=f"erase{RUN}"
    ) as running:
        yield running


async def personal_data_left(mongo: AsyncMongoClient[dict[str, Any]], system: System) -> list[str]:
    """Every (database.collection) where a document still holds the name or the email."""
    found = []
    for database in system.databases.values():
        for collection in await mongo[database].list_collection_names():
            async for document in mongo[database][collection].find({}):
                text = json.dumps(document, default=str)
                if NAME in text or EMAIL in text:
                    found.append(f"{database}.{collection}")
                    break
    return found


def published_at(value: bytes) -> datetime:
    """An event's CloudEvents time; the dawn of time for values that are not events (the
    poison records other tests put on the same topics)."""
    try:
        return datetime.fromisoformat(json.loads(value)["time"].replace("Z", "+00:00"))
    except (ValueError, KeyError, TypeError, AttributeError):
        return datetime.min.replace(tzinfo=UTC)


async def funnel(mongo: AsyncMongoClient[dict[str, Any]], system: System) -> list[Any]:
    applications = mongo[system.databases["applications"]]["applications"]
    return [
        (d["posting_id"], d["status"], len(d["history"]), d["match"]["score"])
        async for d in applications.find({"candidate.candidate_id": CANDIDATE})
    ]


async def test_an_erased_candidate_leaves_no_personal_data_behind(
    system: System, servers: Servers, mongo: AsyncMongoClient[dict[str, Any]]
) -> None:
    candidate = bearer("candidate", sub=CANDIDATE, email=EMAIL)
    employer = bearer("employer", sub=f"emp-{RUN}", org=ORG)
    notifications = httpx.AsyncClient(base_url=system.url("notifications"), timeout=10)
    postings = httpx.AsyncClient(base_url=system.url("postings"), timeout=10)
    applications = httpx.AsyncClient(base_url=system.url("applications"), timeout=10)
    async with notifications, postings, applications, webhook_receiver(SECRET) as receiver:
        assert (
            await notifications.post(
                "/alerts", json={"skills": ["go"], "email": EMAIL}, headers=candidate
            )
        ).status_code == 201
        hook = await notifications.post(
            "/webhooks",
            json={"url": receiver.url, "event_types": ["application.submitted"], "secret": SECRET},
            headers=employer,
        )
        assert hook.status_code == 201, hook.text
        created = await postings.post(
            "/postings", json=posting_body(skills=["go", "kafka"]), headers=employer
        )
        posting_id = created.json()["posting_id"]

        async def apply() -> httpx.Response | None:
            response = await applications.post(
                f"/postings/{posting_id}/applications",
                json={
                    "name": NAME,
                    "email": EMAIL,
                    "resume_url": "https://cv.example.org/kj.pdf",
                    "cover_letter": f"Regards, {NAME}",
                    "skills": ["go"],
                    "consent": {"processing": True, "keep_profile": True},
                },
                headers={**candidate, "Idempotency-Key": f"apply-{RUN}"},
            )
            return response if response.status_code != 404 else None

        applied = await eventually(apply, timeout_s=60)
        assert applied.status_code == 201, applied.text
        application_id = applied.json()["application_id"]
        moved = await applications.post(
            f"/applications/{application_id}/status",
            json={"to_status": "screening"},
            headers=employer,
        )
        assert moved.status_code == 200

        # Everything the candidate's data reached, before the erasure.
        async def delivered() -> bool:
            return bool(receiver.accepted)

        await eventually(delivered, timeout_s=60)

        async def inbox_ready() -> bool:
            items = (await notifications.get("/notifications", headers=candidate)).json()
            return len(items["items"]) >= 3

        await eventually(inbox_ready, timeout_s=60)
        assert await personal_data_left(mongo, system)
        before = await funnel(mongo, system)
        submitted = await read_until(
            servers.kafka_bootstrap,
            ["application.submitted"],
            lambda rs: any(r.key == application_id.encode() for r in rs),
        )
        original = [r for r in submitted if r.key == application_id.encode()]

        # Someone else may not ask; the candidate may.
        other = bearer("candidate", sub=f"other-{RUN}")
        refused = await applications.post(f"/candidates/{CANDIDATE}/erasure", headers=other)
        assert refused.status_code == 403
        erasure_started = datetime.now(UTC)
        requested = await applications.post(f"/candidates/{CANDIDATE}/erasure", headers=candidate)
        assert requested.status_code == 202, requested.text
        assert requested.json()["status"] == "pending"

        async def complete() -> dict[str, Any] | None:
            status = await applications.get(f"/candidates/{CANDIDATE}/erasure", headers=candidate)
            body: dict[str, Any] = status.json()
            return body if body["status"] == "complete" else None

        status = await eventually(complete, timeout_s=90)
        assert sorted(c["service"] for c in status["confirmations"]) == [
            "applications",
            "notifications",
            "postings",
        ]
        assert await personal_data_left(mongo, system) == []
        assert await funnel(mongo, system) == before
        shown = await applications.get(f"/applications/{application_id}", headers=employer)
        assert shown.json()["candidate"]["name"] == "(erased)"

        # Events published since the erasure began carry no personal data.
        records = await read_until(servers.kafka_bootstrap, TOPICS, lambda rs: False, timeout_s=5)
        newer = [r for r in records if published_at(r.value) >= erasure_started]
        assert newer, "the erasure's own events are among them"
        for record in newer:
            assert NAME.encode() not in record.value
            assert EMAIL.encode() not in record.value

        # Replaying the old events (a consumer reset, a redelivery) brings nothing back.
        for record in original:
            await produce(
                servers.kafka_bootstrap, "application.submitted", record.value, key=record.key
            )
        marker = await postings.post("/postings", json=posting_body(), headers=employer)
        assert marker.status_code == 201
        notifications_db = mongo[system.databases["notifications"]]
        await eventually(
            lambda: notifications_db["announced_postings"].find_one(
                {"_id": marker.json()["posting_id"]}
            ),
            timeout_s=60,
        )
        assert await personal_data_left(mongo, system) == []

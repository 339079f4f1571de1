"""Test support for the applications service on the real servers: the service in process,
postings published on Kafka (`Board`), the HTTP calls as each party, the events read back from
the topics, stored documents, and the read model's rebuild command."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
from bson import ObjectId
from pymongo import AsyncMongoClient

from hirestream.applications.app import ApplicationsSettings, create_app
from hirestream.shared.events.envelope import serialize, source_of
from hirestream.shared.events.postings import POSTING_CLOSED, CloseReason, PostingClosed
from hirestream.shared.events.types import utc_now
from tests.conftest import bearer, candidate_email, client_for, settings_for
from tests.support.applications import (
    ADMIN_USER,
    EMPLOYER_USER,
    ORG,
    POSTING_SKILLS,
    STATUS_CHANGED,
    SUBMITTED,
    application_body,
)
from tests.support.factories import new_posting_id, posting_created_event
from tests.support.kafka import Record, keyed, produce, read_until
from tests.support.polling import eventually
from tests.support.servers import Servers, kafka_env

# ----------------------------------------------------------------- the service in process


async def running_applications(
    base_env: dict[str, str], database: str
) -> AsyncIterator[httpx.AsyncClient]:
    """The applications service in process (its consumers and relays running), on `database`."""
    settings = settings_for(ApplicationsSettings, base_env, mongodb_database=database)
    async for client in client_for(create_app(settings)):
        yield client


async def wait_for_view(
    mongo: AsyncMongoClient[dict[str, Any]], database: str, posting_id: str, version: int
) -> dict[str, Any]:
    """The read model's document of the posting, once it holds `version` or a newer one."""
    views = mongo[database]["postings_view"]
    query = {"_id": posting_id, "version": {"$gte": version}}
    return await eventually(lambda: views.find_one(query))


@dataclass(frozen=True)
class Board:
    """Publishes postings the way the postings service does, and waits until the
    applications service's read model holds them."""

    servers: Servers
    mongo: AsyncMongoClient[dict[str, Any]]
    db: str

    async def open(self, org: str, *, skills: list[str] | None = None) -> str:
        posting_id = new_posting_id()
        event = posting_created_event(
            posting_id, org=org, skills=POSTING_SKILLS if skills is None else skills
        )
        await produce(
            self.servers.kafka_bootstrap, "posting.created", event, key=posting_id.encode()
        )
        await wait_for_view(self.mongo, self.db, posting_id, 1)
        return posting_id

    async def close(self, posting_id: str, org: str) -> None:
        closed = PostingClosed(
            posting_id=posting_id,
            org=org,
            reason=CloseReason.FILLED,
            version=2,
            closed_at=utc_now(),
        )
        await produce(
            self.servers.kafka_bootstrap,
            "posting.closed",
            serialize(POSTING_CLOSED.new(closed, source=source_of("postings"))),
            key=posting_id.encode(),
        )
        await wait_for_view(self.mongo, self.db, posting_id, 2)


@dataclass(frozen=True)
class Applied:
    """An application made over HTTP, and who made it to which org's posting."""

    org: str
    posting_id: str
    candidate: str
    application_id: str


def new_org() -> str:
    return f"org-{uuid.uuid4().hex[:12]}"


def new_candidate() -> str:
    return f"cand-{uuid.uuid4().hex[:12]}"


def as_candidate(sub: str) -> dict[str, str]:
    return bearer("candidate", sub=sub)


def as_employer(org: str, sub: str = EMPLOYER_USER) -> dict[str, str]:
    return bearer("employer", sub=sub, org=org)


def as_admin() -> dict[str, str]:
    return bearer("admin", sub=ADMIN_USER)


async def apply(
    client: httpx.AsyncClient,
    posting_id: str,
    sub: str,
    *,
    key: str | None = None,
    **changes: Any,
) -> httpx.Response:
    headers = as_candidate(sub)
    if key is not None:
        headers["Idempotency-Key"] = key
    body = application_body(**{"email": candidate_email(sub), **changes})
    return await client.post(f"/postings/{posting_id}/applications", json=body, headers=headers)


async def applied(client: httpx.AsyncClient, posting_id: str, sub: str) -> dict[str, Any]:
    response = await apply(client, posting_id, sub)
    assert response.status_code == 201, response.text
    application: dict[str, Any] = response.json()
    return application


async def applied_to_new_posting(client: httpx.AsyncClient, board: Board) -> Applied:
    """A fresh application in `submitted`, by a new candidate to a new org's new posting."""
    org, candidate = new_org(), new_candidate()
    posting_id = await board.open(org)
    application = await applied(client, posting_id, candidate)
    return Applied(org, posting_id, candidate, application["application_id"])


async def move(
    client: httpx.AsyncClient,
    application_id: str,
    to_status: str,
    headers: dict[str, str],
    reason: str | None = None,
) -> httpx.Response:
    body: dict[str, Any] = {"to_status": to_status}
    if reason is not None:
        body["reason"] = reason
    return await client.post(f"/applications/{application_id}/status", json=body, headers=headers)


async def moved(
    client: httpx.AsyncClient, application_id: str, to_status: str, headers: dict[str, str]
) -> dict[str, Any]:
    response = await move(client, application_id, to_status, headers)
    assert response.status_code == 200, response.text
    application: dict[str, Any] = response.json()
    return application


async def fetch(client: httpx.AsyncClient, application_id: str) -> dict[str, Any]:
    response = await client.get(f"/applications/{application_id}", headers=as_admin())
    assert response.status_code == 200, response.text
    application: dict[str, Any] = response.json()
    return application


async def listed(client: httpx.AsyncClient, headers: dict[str, str], **params: Any) -> list[str]:
    response = await client.get("/applications", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return [item["application_id"] for item in response.json()["items"]]


# ------------------------------------------------------------------ events on the wire

# Longer than the outbox's inline grace (5 s), after which its sweep would send again anything
# the relay left behind: a duplicate, if there is one, has shown up by then.
DUPLICATE_GRACE_S = 6.0


def for_posting(records: Iterable[Record], posting_id: str) -> list[Record]:
    # Skip values that are not events: the fault tests put poison on the same topic.
    return [r for r in records if _data_of(r).get("posting_id") == posting_id]


def _data_of(record: Record) -> dict[str, Any]:
    try:
        data = record.json()["data"]
    except (ValueError, KeyError, TypeError):
        return {}
    return data if isinstance(data, dict) else {}


async def settled_submissions(servers: Servers, posting_id: str, *, expected: int) -> list[Record]:
    """Every application.submitted of this posting: read until `expected` are there, then
    read everything again once a duplicate has had the time to show."""
    await read_until(
        servers.kafka_bootstrap,
        [SUBMITTED],
        lambda rs: len(for_posting(rs, posting_id)) >= expected,
    )
    records = await read_until(
        servers.kafka_bootstrap, [SUBMITTED], lambda rs: False, timeout_s=DUPLICATE_GRACE_S
    )
    return for_posting(records, posting_id)


async def status_changes_until(servers: Servers, application_id: str, version: int) -> list[Record]:
    """The application's status_changed records up to the one carrying `version`. One key, one
    partition, published in order from one outbox: any event an earlier request wrongly
    caused would be among them."""

    def arrived(records: list[Record]) -> bool:
        return any(r.json()["data"]["version"] == version for r in keyed(records, application_id))

    records = await read_until(servers.kafka_bootstrap, [STATUS_CHANGED], arrived)
    return keyed(records, application_id)


# ------------------------------------------------------------- documents and commands


def application_document(
    candidate: str, status: str, age_days: float, **changes: Any
) -> dict[str, Any]:
    """An application's document as the store keeps it, last changed `age_days` ago."""
    at = utc_now() - timedelta(days=age_days)
    document: dict[str, Any] = {
        "_id": ObjectId(),
        "posting_id": f"p-{ObjectId()}",
        "org": ORG,
        "candidate": {"candidate_id": candidate, "name": f"Name {candidate}", "email": "a@b.co"},
        "resume_url": "https://cv.example.com/x.pdf",
        "cover_letter": "Hello",
        "skills": ["go"],
        "match": {"score": 0.5, "matched_skills": ["go"], "missing_skills": ["kafka"]},
        "status": status,
        "version": 2,
        "submitted_at": at,
        "updated_at": at,
        "history": [],
        "anonymised": False,
    }
    document.update(changes)
    return document


def run_rebuild(base_env: dict[str, str], database: str, *flags: str) -> str:
    """The read model's rebuild command, run as an operator would (as `operator`, the Kafka
    principal of people's tools); its log (stderr)."""
    operator = kafka_env(base_env["KAFKA_BOOTSTRAP_SERVERS"], "operator")
    result = subprocess.run(
        [sys.executable, "-m", "hirestream.applications.rebuild_read_model", *flags],
        env={
            **os.environ,
            **base_env,
            **operator,
            "MONGODB_DATABASE": database,
            "LOG_FORMAT": "json",
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stderr

"""One posting end to end: three service processes on the real broker and database.

An employer creates a posting over HTTP; an independent Kafka client reads `posting.created`
and checks it against the contract; both consumers have it in their own databases.
"""

from __future__ import annotations

import signal
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from hirestream.shared.events.postings import POSTING_CREATED
from tests.conftest import bearer
from tests.support.factories import posting_body
from tests.support.kafka import read_until
from tests.support.polling import eventually
from tests.support.processes import ServiceProcess
from tests.support.system import running_system

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def system(
    base_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, ServiceProcess]]:
    with running_system(
        base_env, tmp_path_factory.mktemp("service-logs"), database_suffix=uuid.uuid4().hex[:8]
    ) as running:
        yield running.processes
        processes = running.processes
    # SIGTERM (sent on leaving the block): each service finishes its shutdown (the lifespan
    # logs service.stopped), then uvicorn re-raises the signal, as process managers expect.
    for process in processes.values():
        assert process.process is not None
        assert process.process.returncode in {0, -signal.SIGTERM}, process.tail()
        assert '"event": "service.stopped"' in process.tail(), process.tail()


async def wait_for_document(
    mongo: AsyncMongoClient[dict[str, Any]], db: str, collection: str, doc_id: str
) -> dict[str, Any]:
    return await eventually(lambda: mongo[db][collection].find_one({"_id": doc_id}), timeout_s=60)


async def test_a_posting_travels_from_http_to_both_consumers(
    system: dict[str, ServiceProcess], servers: Any, mongo: AsyncMongoClient[dict[str, Any]]
) -> None:
    async with httpx.AsyncClient(base_url=system["postings"].url, timeout=10) as client:
        created = await client.post(
            "/postings",
            json=posting_body(title="Senior Backend Developer, Payments"),
            headers={**bearer("employer", sub="emp-1", org="acme"), "X-Request-ID": "req-e2e-1"},
        )
    assert created.status_code == 201, created.text
    posting = created.json()
    posting_id = posting["posting_id"]

    records = await read_until(
        servers.kafka_bootstrap,
        ["posting.created"],
        lambda rs: any(r.key == posting_id.encode() for r in rs),
        timeout_s=60,
    )
    (record,) = [r for r in records if r.key == posting_id.encode()]
    assert record.headers["content-type"] == "application/cloudevents+json; charset=UTF-8"
    wire = record.json()
    event = POSTING_CREATED.parse(record.value)  # the contract's envelope and payload
    assert wire["specversion"] == "1.0"
    assert wire["subject"] == posting_id
    assert wire["correlationid"] == "req-e2e-1"
    assert wire["dataschema"].endswith("/posting.created/1.json")
    assert event.data.model_dump(mode="json") == {
        **{k: v for k, v in posting.items() if k != "salary" and v is not None},
        "salary": posting["salary"],
    }

    applications_db = system["applications"].env["MONGODB_DATABASE"]
    view = await wait_for_document(mongo, applications_db, "postings_view", posting_id)
    assert view["version"] == 1
    assert view["status"] == "open"
    assert view["org"] == "acme"

    notifications_db = system["notifications"].env["MONGODB_DATABASE"]
    announced = await wait_for_document(mongo, notifications_db, "announced_postings", posting_id)
    assert announced["announced_by_event"] == event.id

    for process in system.values():
        async with httpx.AsyncClient(base_url=process.url) as client:
            ready = await client.get("/readyz")
        assert ready.status_code == 200, (process.name, ready.text)

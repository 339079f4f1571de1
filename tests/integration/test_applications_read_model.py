"""The applications service's postings read model, fed over the real broker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from tests.conftest import unique_db
from tests.support.applications_integration import running_applications, wait_for_view
from tests.support.factories import (
    new_posting_id,
    posting_closed_event,
    posting_created_event,
    posting_updated_event,
)
from tests.support.kafka import produce, read_until
from tests.support.servers import Servers

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def applications_db() -> str:
    return unique_db("applications")


@pytest.fixture(scope="module")
async def applications(
    base_env: dict[str, str], applications_db: str
) -> AsyncIterator[httpx.AsyncClient]:
    async for client in running_applications(base_env, applications_db):
        yield client


async def test_created_event_lands_in_the_read_model(
    applications: httpx.AsyncClient,
    servers: Servers,
    mongo: AsyncMongoClient[dict[str, Any]],
    applications_db: str,
) -> None:
    posting_id = new_posting_id()
    await produce(
        servers.kafka_bootstrap,
        "posting.created",
        posting_created_event(posting_id),
        key=posting_id.encode(),
    )
    view = await wait_for_view(mongo, applications_db, posting_id, 1)
    assert view["status"] == "open"
    assert view["org"] == "acme"
    assert view["skills"] == ["python", "kafka", "mongodb", "kubernetes"]


async def test_updated_before_created_and_duplicates_leave_the_newest(
    applications: httpx.AsyncClient,
    servers: Servers,
    mongo: AsyncMongoClient[dict[str, Any]],
    applications_db: str,
) -> None:
    posting_id = new_posting_id()
    key = posting_id.encode()
    update_v3 = posting_updated_event(posting_id, 3, title="Principal Engineer")
    # Out of order across topics, and the same event twice.
    await produce(servers.kafka_bootstrap, "posting.updated", update_v3, key=key)
    await produce(servers.kafka_bootstrap, "posting.updated", update_v3, key=key)
    await produce(
        servers.kafka_bootstrap,
        "posting.updated",
        posting_updated_event(posting_id, 2, title="Old title"),
        key=key,
    )
    await produce(
        servers.kafka_bootstrap, "posting.created", posting_created_event(posting_id), key=key
    )
    view = await wait_for_view(mongo, applications_db, posting_id, 3)
    # Let the older events (already sent) be consumed too, then look again.
    await asyncio.sleep(3)
    view = await wait_for_view(mongo, applications_db, posting_id, 3)
    assert view["version"] == 3
    assert view["title"] == "Principal Engineer"

    await produce(
        servers.kafka_bootstrap, "posting.closed", posting_closed_event(posting_id, 4), key=key
    )
    closed = await wait_for_view(mongo, applications_db, posting_id, 4)
    assert closed["status"] == "closed"
    assert closed["title"] == "Principal Engineer"  # the closing did not erase what it lacks


async def test_poison_goes_to_the_dead_letter_topic_and_the_partition_moves_on(
    applications: httpx.AsyncClient,
    servers: Servers,
    mongo: AsyncMongoClient[dict[str, Any]],
    applications_db: str,
) -> None:
    poison_key = new_posting_id().encode()
    await produce(servers.kafka_bootstrap, "posting.created", b"{not json", key=poison_key)
    wrong_schema = b'{"specversion": "1.0", "type": "posting.created", "data": {}}'
    await produce(servers.kafka_bootstrap, "posting.created", wrong_schema, key=poison_key)
    # A good event with the same key (so the same partition) after the poison.
    posting_id = poison_key.decode()
    await produce(
        servers.kafka_bootstrap,
        "posting.created",
        posting_created_event(posting_id),
        key=poison_key,
    )
    assert (await wait_for_view(mongo, applications_db, posting_id, 1))["version"] == 1

    dead = await read_until(
        servers.kafka_bootstrap,
        ["posting.created.dlq"],
        lambda rs: len([r for r in rs if r.key == poison_key]) >= 2,
    )
    ours = [r for r in dead if r.key == poison_key]
    assert [r.value for r in ours] == [b"{not json", wrong_schema]
    for record in ours:
        assert record.headers["dlq-consumer-group"] == "applications.postings-read-model"
        assert record.headers["dlq-original-topic"] == "posting.created"
        assert record.headers["dlq-attempts"] == "1"
        assert record.headers["dlq-error"].startswith("invalid event")
    assert "data.posting_id" in ours[1].headers["dlq-error"]

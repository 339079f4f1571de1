"""The outbox relay on the real database and broker: prompt, ordered, and crash-safe."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection

from hirestream.shared.events.postings import POSTING_CLOSED, CloseReason, PostingClosed
from hirestream.shared.events.types import utc_now
from hirestream.shared.messaging.outbox import (
    OutboxBacklog,
    OutboxRelay,
    OutboxTiming,
    append_outbox_update,
    new_outbox_fields,
    outbox_entry,
)
from tests.conftest import unique_db
from tests.support.kafka import read_until

pytestmark = pytest.mark.integration

FAST = OutboxTiming(
    inline_grace=timedelta(seconds=1),
    lease=timedelta(seconds=2),
    retry_after=timedelta(milliseconds=200),
    sweep_interval_s=0.2,
    sweep_idle_interval_s=0.5,
)


@pytest.fixture
async def collection(
    mongo: AsyncMongoClient[dict[str, Any]],
) -> AsyncIterator[AsyncCollection[dict[str, Any]]]:
    db = unique_db("outbox")
    yield mongo[db]["aggregates"]
    await mongo.drop_database(db)


@pytest.fixture
async def producer(servers: Any) -> AsyncIterator[AIOKafkaProducer]:
    producer = AIOKafkaProducer(**servers.kafka_client(), acks="all", enable_idempotence=True)
    await producer.start()
    yield producer
    await producer.stop()


def closing(aggregate_id: str, version: int, topic: str) -> Any:
    payload = PostingClosed(
        posting_id=aggregate_id,
        org="acme",
        reason=CloseReason.CANCELLED,
        version=version,
        closed_at=utc_now(),
    )
    event = POSTING_CLOSED.new(payload, source="tests")
    # Same envelope, a private topic per test so that counts are exact.
    return event.model_copy(update={"type": topic})


def publisher(producer: AIOKafkaProducer, sent: list[str]) -> Any:
    async def publish(topic: str, key: bytes, value: bytes, headers: Mapping[str, str]) -> None:
        await producer.send_and_wait(
            topic, value, key=key, headers=[(k, v.encode()) for k, v in headers.items()]
        )
        sent.append(key.decode())

    return publish


async def test_a_crash_between_write_and_publish_is_repaired_by_the_sweep_exactly_once(
    collection: AsyncCollection[dict[str, Any]], producer: AIOKafkaProducer, servers: Any
) -> None:
    topic = f"test.outbox.{uuid.uuid4().hex[:8]}"
    aggregate_id = uuid.uuid4().hex
    event = closing(aggregate_id, 1, topic)
    # The service wrote the change and its event, then died before its relay ran.
    await collection.insert_one(
        {"_id": aggregate_id, **new_outbox_fields(map(outbox_entry, [event]), FAST)}
    )

    sent: list[str] = []
    relay = OutboxRelay(collection, publisher(producer, sent), FAST)
    relay.start()
    try:
        records = await read_until(servers.kafka_bootstrap, [topic], lambda rs: len(rs) >= 1)
        await asyncio.sleep(FAST.inline_grace.total_seconds() * 3)  # room for a wrong repeat
    finally:
        await relay.stop(timeout_s=5)
    records = await read_until(servers.kafka_bootstrap, [topic], lambda rs: False, timeout_s=3)
    assert [r.json()["id"] for r in records] == [event.id]
    document = await collection.find_one({"_id": aggregate_id})
    assert document is not None
    assert document["outbox"] == []
    assert document["outbox_due_at"] is None


async def test_inline_relay_publishes_in_order_and_nothing_twice(
    collection: AsyncCollection[dict[str, Any]], producer: AIOKafkaProducer, servers: Any
) -> None:
    topic = f"test.outbox.{uuid.uuid4().hex[:8]}"
    aggregate_id = uuid.uuid4().hex
    sent: list[str] = []
    relay = OutboxRelay(collection, publisher(producer, sent), FAST)
    relay.start()  # the sweep runs too, as in the service
    events = [closing(aggregate_id, version, topic) for version in range(1, 11)]
    try:
        await collection.insert_one(
            {"_id": aggregate_id, **new_outbox_fields(map(outbox_entry, events[:1]), FAST)}
        )
        relay.notify(aggregate_id)
        for event in events[1:]:  # changes keep coming while the relay works
            await collection.update_one(
                {"_id": aggregate_id}, append_outbox_update(map(outbox_entry, [event]), FAST)
            )
            relay.notify(aggregate_id)
        records = await read_until(servers.kafka_bootstrap, [topic], lambda rs: len(rs) >= 10)
        await asyncio.sleep(FAST.inline_grace.total_seconds() * 3)
    finally:
        await relay.stop(timeout_s=5)
    records = await read_until(servers.kafka_bootstrap, [topic], lambda rs: False, timeout_s=3)
    assert [r.json()["data"]["version"] for r in records] == list(range(1, 11))
    assert len(sent) == 10
    # Nothing is left waiting: the last relay's write (or the sweep) cleared the due time.
    document = await collection.find_one({"_id": aggregate_id})
    assert document is not None
    assert (document["outbox"], document["outbox_due_at"]) == ([], None)
    assert relay.backlog == OutboxBacklog(0, None)


async def test_the_backlog_counts_overdue_documents_with_events_not_those_only_due(
    collection: AsyncCollection[dict[str, Any]], producer: AIOKafkaProducer
) -> None:
    overdue_since = utc_now() - timedelta(seconds=30)
    waiting = closing("a", 1, "test.outbox.pending")
    # Left by a relay that failed to publish: overdue, its event still waiting.
    await collection.insert_one(
        {
            "_id": "a",
            **new_outbox_fields(map(outbox_entry, [waiting]), FAST),
            "outbox_due_at": overdue_since,
        }
    )
    # Published by the inline relay, due time not yet cleared:
    await collection.insert_one(
        {
            "_id": "b",
            **new_outbox_fields(map(outbox_entry, []), FAST),
            "outbox_due_at": overdue_since,
        }
    )

    async def broker_down(*_: Any) -> None:
        raise ConnectionError("broker unreachable")

    relay = OutboxRelay(collection, broker_down, FAST)
    assert relay.backlog == OutboxBacklog(0, None)  # nothing known before the first sweep
    await relay.sweep_once()
    assert relay.backlog.documents == 1
    oldest = relay.backlog.oldest_recorded_at
    assert oldest is not None
    assert abs((utc_now() - oldest).total_seconds()) < 60


async def test_a_failed_publish_keeps_the_events_and_is_retried(
    collection: AsyncCollection[dict[str, Any]], producer: AIOKafkaProducer, servers: Any
) -> None:
    topic = f"test.outbox.{uuid.uuid4().hex[:8]}"
    aggregate_id = uuid.uuid4().hex
    event = closing(aggregate_id, 1, topic)
    await collection.insert_one(
        {"_id": aggregate_id, **new_outbox_fields(map(outbox_entry, [event]), FAST)}
    )

    async def broker_down(*_: Any) -> None:
        raise ConnectionError("broker unreachable")

    assert await OutboxRelay(collection, broker_down, FAST).relay(aggregate_id) == 0
    document = await collection.find_one({"_id": aggregate_id})
    assert document is not None
    assert [entry["id"] for entry in document["outbox"]] == [event.id]
    assert document["outbox_claim"] is None

    sent: list[str] = []
    relay = OutboxRelay(collection, publisher(producer, sent), FAST)
    relay.start()
    try:
        records = await read_until(servers.kafka_bootstrap, [topic], lambda rs: len(rs) >= 1)
    finally:
        await relay.stop(timeout_s=5)
    assert [r.json()["id"] for r in records] == [event.id]


async def test_a_sweep_round_clears_the_emptied_documents_and_publishes_the_overdue(
    collection: AsyncCollection[dict[str, Any]], producer: AIOKafkaProducer
) -> None:
    past = utc_now() - timedelta(seconds=10)
    timing = OutboxTiming(sweep_batch=10)
    emptied = [f"done-{n}" for n in range(5)]
    await collection.insert_many(
        [
            {"_id": doc_id, **new_outbox_fields(map(outbox_entry, [])), "outbox_due_at": past}
            for doc_id in emptied
        ]
    )
    stranded = closing("left", 1, "test.outbox.sweep-round")
    await collection.insert_one(
        {"_id": "left", **new_outbox_fields(map(outbox_entry, [stranded])), "outbox_due_at": past}
    )
    sent: list[str] = []
    relay = OutboxRelay(collection, publisher(producer, sent), timing)

    assert await relay.sweep_once() == 1
    assert sent == ["left"]
    assert await collection.count_documents({"outbox_due_at": None}) == len(emptied)
    left = await collection.find_one({"_id": "left"})
    assert left is not None
    assert left["outbox"] == []


async def test_one_relay_write_empties_the_outbox_and_clears_the_due_time(
    collection: AsyncCollection[dict[str, Any]], producer: AIOKafkaProducer
) -> None:
    event = closing("one", 1, "test.outbox.one-write")
    await collection.insert_one(
        {"_id": "one", **new_outbox_fields(map(outbox_entry, [event]), FAST)}
    )
    relay = OutboxRelay(collection, publisher(producer, []), FAST)  # no sweep running
    assert await relay.relay("one") == 1
    document = await collection.find_one({"_id": "one"})
    assert document is not None
    assert (document["outbox"], document["outbox_due_at"]) == ([], None)


async def test_an_event_added_while_the_relay_publishes_stays_with_its_due_time(
    collection: AsyncCollection[dict[str, Any]], producer: AIOKafkaProducer
) -> None:
    first, second = (closing("raced", v, "test.outbox.raced") for v in (1, 2))
    await collection.insert_one(
        {"_id": "raced", **new_outbox_fields(map(outbox_entry, [first]), FAST)}
    )
    send = publisher(producer, [])

    async def publish_while_another_write_lands(
        topic: str, key: bytes, value: bytes, headers: Mapping[str, str]
    ) -> None:
        await send(topic, key, value, headers)
        await collection.update_one(
            {"_id": "raced"}, append_outbox_update(map(outbox_entry, [second]), FAST)
        )

    relay = OutboxRelay(collection, publish_while_another_write_lands, FAST)
    assert await relay.relay("raced") == 1
    document = await collection.find_one({"_id": "raced"})
    assert document is not None
    assert [entry["id"] for entry in document["outbox"]] == [second.id]
    assert document["outbox_due_at"] is not None  # the sweep will find it if its relay dies

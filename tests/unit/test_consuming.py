"""Consuming with dead letters, on FastStream's in-memory broker (unit level only: the same
paths run on the real broker in tests/integration)."""

from __future__ import annotations

from typing import Any

from faststream.kafka import KafkaBroker, TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage
from pymongo.errors import ServerSelectionTimeoutError

from hirestream.shared.events.envelope import CloudEvent
from hirestream.shared.events.postings import POSTING_CREATED
from hirestream.shared.messaging.consuming import RetryPolicy, raw_bytes, subscribe, subscribe_batch
from tests.support.factories import posting_created_event

FAST_RETRY = RetryPolicy(attempts=3, initial_backoff_s=0.01, max_backoff_s=0.02)


def broker_with(handler: Any) -> tuple[KafkaBroker, list[Any]]:
    broker = KafkaBroker()
    dead: list[Any] = []

    @broker.subscriber("posting.created.dlq", group_id="dlq-reader", decoder=raw_bytes)
    async def on_dead(message: KafkaMessage) -> None:
        dead.append((message.body, message.headers))

    subscribe(broker, POSTING_CREATED, group_id="g", handle=handler, retry=FAST_RETRY)
    return broker, dead


async def test_a_valid_event_reaches_the_handler() -> None:
    seen: list[CloudEvent[Any]] = []

    async def handle(event: CloudEvent[Any]) -> None:
        seen.append(event)

    broker, dead = broker_with(handle)
    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish(posting_created_event("p1"), "posting.created", key=b"p1")
    assert [event.data.posting_id for event in seen] == ["p1"]
    assert dead == []


async def test_poison_is_dead_lettered_without_calling_the_handler() -> None:
    calls = 0

    async def handle(event: CloudEvent[Any]) -> None:
        nonlocal calls
        calls += 1

    broker, dead = broker_with(handle)
    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish(b"\x00not json", "posting.created", key=b"k")
    assert calls == 0
    ((body, headers),) = dead
    assert body == b"\x00not json"
    assert headers["dlq-attempts"] == "1"
    assert headers["dlq-consumer-group"] == "g"
    assert headers["dlq-error"].startswith("invalid event")


async def test_transient_failures_are_retried_then_dead_lettered() -> None:
    attempts = 0

    async def handle(event: CloudEvent[Any]) -> None:
        nonlocal attempts
        attempts += 1
        raise ServerSelectionTimeoutError("database down")

    broker, dead = broker_with(handle)
    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish(posting_created_event("p2"), "posting.created", key=b"p2")
    assert attempts == FAST_RETRY.attempts
    ((_, headers),) = dead
    assert headers["dlq-attempts"] == str(FAST_RETRY.attempts)
    assert "ServerSelectionTimeoutError" in headers["dlq-error"]


async def test_a_transient_failure_that_clears_is_not_dead_lettered() -> None:
    attempts = 0

    async def handle(event: CloudEvent[Any]) -> None:
        nonlocal attempts
        attempts += 1
        if attempts < 2:
            raise ServerSelectionTimeoutError("database blip")

    broker, dead = broker_with(handle)
    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish(posting_created_event("p3"), "posting.created", key=b"p3")
    assert attempts == 2
    assert dead == []


async def test_a_handler_bug_is_dead_lettered_at_once() -> None:
    attempts = 0

    async def handle(event: CloudEvent[Any]) -> None:
        nonlocal attempts
        attempts += 1
        raise KeyError("oops")

    broker, dead = broker_with(handle)
    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish(posting_created_event("p4"), "posting.created", key=b"p4")
    assert attempts == 1
    assert len(dead) == 1


# --- batches ------------------------------------------------------------------------------


def batch_broker_with(handle_batch: Any, handle: Any) -> tuple[KafkaBroker, list[Any]]:
    broker = KafkaBroker()
    dead: list[Any] = []

    @broker.subscriber("posting.created.dlq", group_id="dlq-reader", decoder=raw_bytes)
    async def on_dead(message: KafkaMessage) -> None:
        dead.append((message.body, message.headers))

    subscribe_batch(
        broker,
        POSTING_CREATED,
        group_id="g",
        handle_batch=handle_batch,
        handle=handle,
        retry=FAST_RETRY,
    )
    return broker, dead


def ids(events: list[CloudEvent[Any]]) -> list[str]:
    return [event.data.posting_id for event in events]


async def test_a_batch_reaches_the_batch_handler_whole_and_poison_in_it_is_dead_lettered() -> None:
    batches: list[list[str]] = []
    singles: list[str] = []

    async def handle_batch(events: list[CloudEvent[Any]]) -> None:
        batches.append(ids(events))

    async def handle(event: CloudEvent[Any]) -> None:
        singles.append(event.data.posting_id)

    broker, dead = batch_broker_with(handle_batch, handle)
    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish_batch(
            posting_created_event("b1"),
            b"\x00not json",
            posting_created_event("b2"),
            topic="posting.created",
        )
    assert batches == [["b1", "b2"]]
    assert singles == []
    ((body, headers),) = dead
    assert body == b"\x00not json"
    assert headers["dlq-error"].startswith("invalid event")


async def test_a_failing_batch_is_handled_record_by_record_and_only_the_bad_one_dead_lettered() -> (
    None
):
    batch_calls = 0
    singles: list[str] = []

    async def handle_batch(events: list[CloudEvent[Any]]) -> None:
        nonlocal batch_calls
        batch_calls += 1
        raise KeyError("one event in the batch breaks a rule")

    async def handle(event: CloudEvent[Any]) -> None:
        if event.data.posting_id == "bad":
            raise KeyError("this one")
        singles.append(event.data.posting_id)

    broker, dead = batch_broker_with(handle_batch, handle)
    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish_batch(
            posting_created_event("c1"),
            posting_created_event("bad"),
            posting_created_event("c2"),
            topic="posting.created",
        )
    assert batch_calls == 1  # not retried: the error is not a transient one
    assert singles == ["c1", "c2"]
    ((_, headers),) = dead
    assert "KeyError" in headers["dlq-error"]
    assert headers["dlq-attempts"] == "1"


async def test_a_batch_is_retried_whole_while_the_failure_is_transient() -> None:
    attempts = 0
    handled: list[list[str]] = []

    async def handle_batch(events: list[CloudEvent[Any]]) -> None:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise ServerSelectionTimeoutError("database blip")
        handled.append(ids(events))

    async def handle(event: CloudEvent[Any]) -> None:
        raise AssertionError("the fallback is not needed for a failure that clears")

    broker, dead = batch_broker_with(handle_batch, handle)
    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish_batch(
            posting_created_event("d1"), posting_created_event("d2"), topic="posting.created"
        )
    assert attempts == 3
    assert handled == [["d1", "d2"]]
    assert dead == []

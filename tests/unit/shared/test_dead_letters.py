"""Typed subscribers with retries and dead letters, on FastStream's in-memory broker (unit level
only: the same paths run on the real broker in tests/integration)."""

from __future__ import annotations

from typing import Any

from faststream.kafka import KafkaBroker, TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage
from pymongo.errors import ServerSelectionTimeoutError

from hirestream.shared.events.envelope import CloudEvent, serialize
from hirestream.shared.events.postings import POSTING_CREATED, PostingCreated
from hirestream.shared.messaging.broker import install_dead_letters
from hirestream.shared.messaging.dead_letters import HandlerRetries
from hirestream.shared.messaging.subscriptions import Subscription, subscribe
from tests.support.factories import posting_created_event, snapshot_fields

FAST_RETRIES = HandlerRetries(attempts=3, initial_backoff_s=0.01, max_backoff_s=0.02)


def broker_with(handler: Any, *, batch: bool = False) -> tuple[KafkaBroker, list[Any]]:
    """A broker with `handler` subscribed to posting.created, and what reaches its DLQ."""
    broker = KafkaBroker()
    install_dead_letters(broker, FAST_RETRIES)
    dead: list[Any] = []

    @broker.subscriber("posting.created.dlq", group_id="dlq-reader")
    async def on_dead(message: KafkaMessage) -> None:
        dead.append((message.body, message.headers))

    subscribe(broker, Subscription(POSTING_CREATED, "g", handler, batch=batch))
    return broker, dead


async def test_a_valid_event_reaches_the_handler_typed() -> None:
    seen: list[CloudEvent[PostingCreated]] = []

    async def handle(event: CloudEvent[PostingCreated]) -> None:
        seen.append(event)

    broker, dead = broker_with(handle)
    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish(posting_created_event("p1"), "posting.created", key=b"p1")
    assert [event.data.posting_id for event in seen] == ["p1"]
    assert isinstance(seen[0].data, PostingCreated)
    assert dead == []


async def test_poison_is_dead_lettered_without_calling_the_handler() -> None:
    calls = 0

    async def handle(event: CloudEvent[PostingCreated]) -> None:
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

    async def handle(event: CloudEvent[PostingCreated]) -> None:
        nonlocal attempts
        attempts += 1
        raise ServerSelectionTimeoutError("database down")

    broker, dead = broker_with(handle)
    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish(posting_created_event("p2"), "posting.created", key=b"p2")
    assert attempts == FAST_RETRIES.attempts
    ((_, headers),) = dead
    assert headers["dlq-attempts"] == str(FAST_RETRIES.attempts)
    assert "ServerSelectionTimeoutError" in headers["dlq-error"]


async def test_a_transient_failure_that_clears_is_not_dead_lettered() -> None:
    attempts = 0

    async def handle(event: CloudEvent[PostingCreated]) -> None:
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

    async def handle(event: CloudEvent[PostingCreated]) -> None:
        nonlocal attempts
        attempts += 1
        raise KeyError("oops")

    broker, dead = broker_with(handle)
    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish(posting_created_event("p4"), "posting.created", key=b"p4")
    assert attempts == 1
    ((_, headers),) = dead
    assert "KeyError" in headers["dlq-error"]


# --- batches ------------------------------------------------------------------------------


def ids(events: list[CloudEvent[PostingCreated]]) -> list[str]:
    return [event.data.posting_id for event in events]


async def test_a_batch_reaches_the_handler_whole_and_poison_in_it_is_dead_lettered() -> None:
    batches: list[list[str]] = []

    async def handle(events: list[CloudEvent[PostingCreated]]) -> None:
        batches.append(ids(events))

    broker, dead = broker_with(handle, batch=True)
    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish_batch(
            posting_created_event("b1"),
            b"\x00not json",
            posting_created_event("b2"),
            topic="posting.created",
        )
    assert batches == [["b1", "b2"]]
    ((body, headers),) = dead
    assert body == b"\x00not json"
    assert headers["dlq-error"].startswith("invalid event")


async def test_a_failing_batch_is_handled_record_by_record_and_only_the_bad_one_dead_lettered() -> (
    None
):
    calls: list[list[str]] = []

    async def handle(events: list[CloudEvent[PostingCreated]]) -> None:
        calls.append(ids(events))
        if "bad" in ids(events):
            raise KeyError("one event in the batch breaks a rule")

    broker, dead = broker_with(handle, batch=True)
    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish_batch(
            posting_created_event("c1"),
            posting_created_event("bad"),
            posting_created_event("c2"),
            topic="posting.created",
        )
    # The batch once (not retried: the error is not a transient one), then one by one.
    assert calls == [["c1", "bad", "c2"], ["c1"], ["bad"], ["c2"]]
    ((_, headers),) = dead
    assert "KeyError" in headers["dlq-error"]
    assert headers["dlq-attempts"] == "1"


async def test_a_batch_is_retried_whole_while_the_failure_is_transient() -> None:
    calls: list[list[str]] = []

    async def handle(events: list[CloudEvent[PostingCreated]]) -> None:
        calls.append(ids(events))
        if len(calls) < 3:
            raise ServerSelectionTimeoutError("database blip")

    broker, dead = broker_with(handle, batch=True)
    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish_batch(
            posting_created_event("d1"), posting_created_event("d2"), topic="posting.created"
        )
    assert calls == [["d1", "d2"]] * 3
    assert dead == []


async def test_an_event_from_another_source_than_its_publishers_is_dead_lettered() -> None:
    calls = 0

    async def handle(event: CloudEvent[PostingCreated]) -> None:
        nonlocal calls
        calls += 1

    data = PostingCreated.model_validate(snapshot_fields("p5", 1))
    forged = serialize(POSTING_CREATED.new(data, source="hirestream/applications"))
    broker, dead = broker_with(handle)
    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish(forged, "posting.created", key=b"p5")
    assert calls == 0
    ((_, headers),) = dead
    assert headers["dlq-error"].startswith("untrusted source 'hirestream/applications'")

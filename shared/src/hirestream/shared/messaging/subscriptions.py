"""What a service consumes, declared once: a `Subscription` per event type and consumer group.

Every subscription gets the same guarantees (`subscribe`):
- an explicit consumer group that starts from the earliest offset when it is new, so events
  published before a service's first start are not missed;
- offsets committed only after the handler returned (FastStream's `NACK_ON_ERROR`: a record
  whose handling raised is read again, never skipped);
- the record's value parsed into the topic's CloudEvent model before the handler sees it, so
  handlers are typed (`CloudEvent[PostingCreated]`) and the AsyncAPI document shows each
  payload; what fails to parse, or comes from another source than the services that publish
  the event type, reaches the handler never, and `<topic>.dlq` at once (`DeadLetterMiddleware`
  does that: bounded retries and dead letters for every subscriber).

Handlers make their effect idempotent themselves (deterministic ids, version guards): a crash
between the effect and the commit redelivers the record.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.message import StreamMessage

from hirestream.shared.events.envelope import CloudEvent, EventType, InvalidEvent

# Records handed to a batch handler at most: one poll's worth, and a bound on what a failed
# batch makes the record-by-record fallback redo.
MAX_BATCH_RECORDS = 500
GATHER_BYTES = 256 * 1024

Handler = Callable[..., Awaitable[None]]
"""`async (event: CloudEvent[Payload]) -> None`, or for a batch subscription
`async (events: list[CloudEvent[Payload]]) -> None`. The annotation is what FastStream
validates against and documents, so it must name the payload."""


@dataclass(frozen=True)
class Subscription:
    event_type: EventType[Any]
    group: str
    handler: Handler
    # A busy topic's handler may take every valid event of a poll at once, so its database
    # work is a few commands per batch rather than per event.
    batch: bool = False
    # For a projection that a moment's lag does not hurt: the broker holds each fetch up to
    # this long until it has GATHER_BYTES, so a steady trickle arrives as a few larger batches.
    gather_ms: int = 0


class InvalidRecords(InvalidEvent):
    """Some records of a batch are not valid events: their indexes and why."""

    def __init__(self, reasons: dict[int, str]) -> None:
        super().__init__(f"{len(reasons)} invalid records")
        self.reasons = reasons


def event_decoder(event_type: EventType[Any]) -> Callable[[StreamMessage[Any]], Awaitable[Any]]:
    """FastStream's decoder for one event type's records. Its own decoder reads JSON only
    under `application/json`, not `application/cloudevents+json`, and would hand a poison
    value to validation as raw bytes."""

    async def decode(message: StreamMessage[Any]) -> CloudEvent[Any]:
        return event_type.trusted(event_type.parse(message.body or b""))

    return decode


def batch_decoder(
    event_type: EventType[Any],
) -> Callable[[StreamMessage[Any]], Awaitable[Any]]:
    async def decode(message: StreamMessage[Any]) -> list[CloudEvent[Any]]:
        events: list[CloudEvent[Any]] = []
        reasons: dict[int, str] = {}
        for index, value in enumerate(message.body):
            try:
                events.append(event_type.trusted(event_type.parse(value or b"")))
            except InvalidEvent as error:
                reasons[index] = str(error)
        if reasons:
            raise InvalidRecords(reasons)
        return events

    return decode


def subscribe(broker: KafkaBroker, subscription: Subscription) -> None:
    event_type = subscription.event_type
    options: dict[str, Any] = {
        "group_id": subscription.group,
        "auto_offset_reset": "earliest",
        "ack_policy": AckPolicy.NACK_ON_ERROR,
        "title": f"{subscription.group}:{event_type.topic}",
        "description": (event_type.payload.__doc__ or "").strip() or None,
    }
    if subscription.batch:
        options |= {
            "batch": True,
            "max_records": MAX_BATCH_RECORDS,
            "decoder": batch_decoder(event_type),
        }
    else:
        options["decoder"] = event_decoder(event_type)
    if subscription.gather_ms:
        options |= {"fetch_min_bytes": GATHER_BYTES, "fetch_max_wait_ms": subscription.gather_ms}
    broker.subscriber(event_type.topic, **options)(subscription.handler)


def consumed_event_types(subscriptions: Sequence[Subscription]) -> list[EventType[Any]]:
    return list({s.event_type.name: s.event_type for s in subscriptions}.values())

"""Consuming events at least once, with an exactly-once effect and dead letters.

Every subscriber registered here:
- belongs to an explicit consumer group and starts from the earliest offset when the group is
  new, so events published before a service's first start are not missed;
- commits its offset only after the handler returned (FastStream `NACK_ON_ERROR`: on an
  exception the record is sought back and read again, never skipped);
- never lets a bad record stop its partition: a value that cannot be parsed or validated goes to
  `<topic>.dlq` at once; a transient failure (database down) is retried with exponential backoff
  and jitter (tenacity), then dead-lettered after a bounded number of attempts. Only when the
  dead letter itself cannot be written does the handler raise, and the record is read again.

Handlers make their effect idempotent themselves (deterministic ids, version guards), because a
crash between the effect and the commit redelivers the record.

`subscribe_batch` is for a busy topic: the handler gets every valid event of a poll (up to
`max_records`) at once, so its database work is a few commands per batch instead of a few per
event. A batch that keeps failing is handled again record by record, with the guarantees
above, so one poison event costs the others nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog
from aiokafka import ConsumerRecord
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.message import StreamMessage
from pydantic import ValidationError
from pymongo.errors import ConnectionFailure, ExecutionTimeout, WriteConcernError
from tenacity import (
    AsyncRetrying,
    RetryError,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from hirestream.shared.events.envelope import CloudEvent, EventType, WrongEventType
from hirestream.shared.events.types import utc_now
from hirestream.shared.web.metrics import DEAD_LETTERS, EVENTS_CONSUMED

log = structlog.get_logger(__name__)

MAX_REASON_LENGTH = 1000

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    ConnectionFailure,  # includes server selection time-outs and network errors
    ExecutionTimeout,
    WriteConcernError,
    TimeoutError,
)


@dataclass(frozen=True)
class RetryPolicy:
    # About a minute and a half of backoff (0.5, 1, 2, 4, 8, 16, 30, 30 s, jittered) plus the
    # driver's own time-outs: a database restart or a short outage does not dead-letter a
    # valid event, and a long one does not hold the partition for ever.
    attempts: int = 9
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 30.0

    def retrying(
        self, transient: tuple[type[BaseException], ...], *, reraise: bool
    ) -> AsyncRetrying:
        """Attempts of a handler under this policy: only `transient` errors are retried."""
        return AsyncRetrying(
            stop=stop_after_attempt(self.attempts),
            wait=wait_exponential_jitter(multiplier=self.initial_backoff_s, max=self.max_backoff_s),
            retry=retry_if_exception_type(transient),
            reraise=reraise,
        )


Handler = Callable[[CloudEvent[Any]], Awaitable[None]]
BatchHandler = Callable[[list[CloudEvent[Any]]], Awaitable[None]]

# Records handed to a batch handler at most: one poll's worth, and a bound on how much one
# failed batch makes the record-by-record fallback redo.
MAX_BATCH = 500


def describe_invalid(error: Exception) -> str:
    """Why a record is poison, without echoing its content (it may hold personal data)."""
    if isinstance(error, ValidationError):
        problems = [
            f"{'.'.join(str(p) for p in item['loc']) or 'value'}: {item['msg']}"
            for item in error.errors(include_input=False, include_url=False)
        ]
        return "invalid event: " + "; ".join(problems)
    return f"invalid event: {error}"


async def raw_bytes(message: StreamMessage[Any]) -> bytes:
    # Hand the handler the record's bytes untouched: decoding JSON here, before our handler,
    # would turn a poison value into an exception that FastStream redelivers for ever.
    return bytes(message.body)


async def raw_batch(message: StreamMessage[Any]) -> list[bytes]:
    # The same for a batch: every record's bytes, parsed one by one in our handler.
    return [bytes(value) for value in message.body]


class DeadLetters:
    """Writes records that could not be handled to `<topic>.dlq`, with the reason in headers."""

    def __init__(self, broker: KafkaBroker, group_id: str) -> None:
        self._broker = broker
        self._group_id = group_id

    async def send(
        self, record: ConsumerRecord[Any, Any], *, reason: str, error: str, attempts: int
    ) -> None:
        headers = {name: value.decode(errors="replace") for name, value in record.headers or ()}
        headers.update(
            {
                "dlq-original-topic": record.topic,
                "dlq-original-partition": str(record.partition),
                "dlq-original-offset": str(record.offset),
                "dlq-consumer-group": self._group_id,
                "dlq-error": error[:MAX_REASON_LENGTH],
                "dlq-attempts": str(attempts),
                "dlq-failed-at": utc_now().isoformat(),
            }
        )
        await self._broker.publish(
            record.value, f"{record.topic}.dlq", key=record.key, headers=headers
        )
        DEAD_LETTERS.labels(record.topic, reason).inc()
        EVENTS_CONSUMED.labels(record.topic, "dead_lettered").inc()


def subscribe(
    broker: KafkaBroker,
    event_type: EventType[Any],
    *,
    group_id: str,
    handle: Handler,
    retry: RetryPolicy = RetryPolicy(),
    transient: tuple[type[BaseException], ...] = TRANSIENT_ERRORS,
) -> None:
    """Register `handle` for one event type's topic, with the guarantees described above."""
    dead_letters = DeadLetters(broker, group_id)

    async def on_record(message: KafkaMessage) -> None:
        record: ConsumerRecord[Any, Any] = message.raw_message
        event = await _parse_or_dead_letter(event_type, record, dead_letters)
        if event is not None:
            with _bound(record, event):
                await _handle_with_retries(event, record, handle, retry, transient, dead_letters)

    broker.subscriber(event_type.topic, decoder=raw_bytes, **_guarantees(event_type, group_id))(
        on_record
    )


def subscribe_batch(
    broker: KafkaBroker,
    event_type: EventType[Any],
    *,
    group_id: str,
    handle_batch: BatchHandler,
    handle: Handler,
    retry: RetryPolicy = RetryPolicy(),
    transient: tuple[type[BaseException], ...] = TRANSIENT_ERRORS,
    max_records: int = MAX_BATCH,
) -> None:
    """Register `handle_batch` for one event type's topic, batch by batch; `handle` (the same
    effect for one event) is the fallback when a batch fails. Guarantees as for `subscribe`:
    the offsets of a batch are committed after it was handled, each event once in effect."""
    dead_letters = DeadLetters(broker, group_id)

    async def on_batch(message: KafkaMessage) -> None:
        records: tuple[ConsumerRecord[Any, Any], ...] = message.raw_message
        parsed = [
            (record, await _parse_or_dead_letter(event_type, record, dead_letters))
            for record in records
        ]
        valid = [(record, event) for record, event in parsed if event is not None]
        if not valid:
            return
        try:
            # Transient failures (database away) are retried for the whole batch, as for one
            # record; anything else goes straight to the record-by-record fallback.
            async for attempt in retry.retrying(transient, reraise=True):
                with attempt:
                    await handle_batch([event for _, event in valid])
        except Exception as error:
            log.warning(
                "events.batch_failed",
                topic=event_type.topic,
                events=len(valid),
                error=f"{type(error).__name__}: {error}",
            )
            for record, event in valid:
                with _bound(record, event):
                    await _handle_with_retries(
                        event, record, handle, retry, transient, dead_letters
                    )
            return
        for record, event in valid:
            with _bound(record, event):
                log.info("event.handled", type=event.type, attempts=1, batch=len(valid))
        EVENTS_CONSUMED.labels(event_type.topic, "handled").inc(len(valid))

    broker.subscriber(
        event_type.topic,
        batch=True,
        max_records=max_records,
        decoder=raw_batch,
        **_guarantees(event_type, group_id),
    )(on_batch)


def _guarantees(event_type: EventType[Any], group_id: str) -> dict[str, Any]:
    """Subscriber options every subscription shares: an explicit group that starts from the
    earliest offset, and offsets committed only after the handler returned."""
    return {
        "group_id": group_id,
        "auto_offset_reset": "earliest",
        "ack_policy": AckPolicy.NACK_ON_ERROR,
        "title": f"{group_id}:{event_type.topic}",
        "description": f"{event_type.payload.__doc__ or ''}".strip() or None,
    }


def _bound(record: ConsumerRecord[Any, Any], event: CloudEvent[Any]) -> Any:
    """Where a record came from and which event it is, on every log line about it."""
    return structlog.contextvars.bound_contextvars(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        event_id=event.id,
        correlation_id=event.correlationid,
    )


async def _parse_or_dead_letter(
    event_type: EventType[Any], record: ConsumerRecord[Any, Any], dead_letters: DeadLetters
) -> CloudEvent[Any] | None:
    """The record's event, or None once a record that is not a valid one was dead-lettered."""
    try:
        return event_type.parse(record.value or b"")
    except (ValidationError, WrongEventType, ValueError) as error:
        reason = describe_invalid(error)
        with structlog.contextvars.bound_contextvars(
            topic=record.topic, partition=record.partition, offset=record.offset
        ):
            log.warning("event.dead_lettered", reason=reason, attempts=1)
        await dead_letters.send(record, reason="invalid", error=reason, attempts=1)
        return None


async def _handle_with_retries(
    event: CloudEvent[Any],
    record: ConsumerRecord[Any, Any],
    handle: Handler,
    retry: RetryPolicy,
    transient: tuple[type[BaseException], ...],
    dead_letters: DeadLetters,
) -> None:
    attempts = 0
    try:
        async for attempt in retry.retrying(transient, reraise=False):
            with attempt:
                attempts = attempt.retry_state.attempt_number
                await handle(event)
        log.info("event.handled", type=event.type, attempts=attempts)
        EVENTS_CONSUMED.labels(record.topic, "handled").inc()
    except RetryError as gave_up:
        cause = gave_up.last_attempt.exception()
        reason = f"transient failure after {attempts} attempts: {type(cause).__name__}: {cause}"
        log.error("event.dead_lettered", reason=reason, attempts=attempts)
        await dead_letters.send(record, reason="transient", error=reason, attempts=attempts)
    except Exception as error:  # a bug or a rule the event breaks: retrying would not help
        reason = f"handler failed: {type(error).__name__}: {error}"
        log.exception("event.dead_lettered", reason=reason, attempts=attempts)
        await dead_letters.send(record, reason="handler", error=reason, attempts=attempts)

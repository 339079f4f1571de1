"""Bounded retries and dead letters around every subscriber (a FastStream middleware).

- A record that is not a valid event of its topic goes to `<topic>.dlq` at once, with the
  reason; the handler never sees it.
- A transient failure (the database unreachable) is retried with exponential backoff and
  jitter, then dead-lettered after a bounded number of attempts.
- Any other failure of the handler is a bug or a rule the event breaks: retrying would not
  help, so it is dead-lettered at once.
- A batch whose handler keeps failing is handled again record by record, so one poison event
  costs the others nothing.
Only when the dead letter itself cannot be written does the error reach FastStream, which then
reads the record again: a bad record never stops its partition, and never loops without bound.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

import structlog
from aiokafka import ConsumerRecord
from faststream import BaseMiddleware
from faststream.message import StreamMessage
from pymongo.errors import ConnectionFailure, ExecutionTimeout, WriteConcernError
from tenacity import (
    AsyncRetrying,
    RetryError,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from hirestream.shared.correlation import correlated
from hirestream.shared.events.envelope import CloudEvent, InvalidEvent
from hirestream.shared.events.types import utc_now
from hirestream.shared.messaging.subscriptions import InvalidRecords
from hirestream.shared.metrics import DEAD_LETTERS

if TYPE_CHECKING:
    from faststream._internal.context.repository import ContextRepo
    from faststream.kafka import KafkaBroker

log = structlog.get_logger(__name__)

MAX_REASON_LENGTH = 1000

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    ConnectionFailure,  # includes server selection time-outs and network errors
    ExecutionTimeout,
    WriteConcernError,
    TimeoutError,
)

Record: TypeAlias = "ConsumerRecord[Any, Any]"
CallNext = Callable[[StreamMessage[Any]], Awaitable[Any]]


@dataclass(frozen=True)
class HandlerRetries:
    """How a handler's transient failures are retried. The default is about a minute and a half
    of backoff (0.5, 1, 2, 4, 8, 16, 30, 30 s, jittered): a database restart does not
    dead-letter a valid event, and a long outage does not hold the partition for ever."""

    attempts: int = 9
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    transient: tuple[type[BaseException], ...] = TRANSIENT_ERRORS

    def retrying(self, *, reraise: bool) -> AsyncRetrying:
        return AsyncRetrying(
            stop=stop_after_attempt(self.attempts),
            wait=wait_exponential_jitter(multiplier=self.initial_backoff_s, max=self.max_backoff_s),
            retry=retry_if_exception_type(self.transient),
            reraise=reraise,
        )


class DeadLetters:
    """Writes records that could not be handled to `<topic>.dlq`: the original key, value and
    headers, plus headers naming the consumer group, the error and the attempt count."""

    def __init__(self, broker: KafkaBroker) -> None:
        self._broker = broker

    async def send(
        self, record: Record, *, group: str, reason: str, error: str, attempts: int
    ) -> None:
        headers = {name: value.decode(errors="replace") for name, value in record.headers or ()}
        headers |= {
            "dlq-original-topic": record.topic,
            "dlq-original-partition": str(record.partition),
            "dlq-original-offset": str(record.offset),
            "dlq-consumer-group": group,
            "dlq-error": error[:MAX_REASON_LENGTH],
            "dlq-attempts": str(attempts),
            "dlq-failed-at": utc_now().isoformat(),
        }
        await self._broker.publish(
            record.value, f"{record.topic}.dlq", key=record.key, headers=headers
        )
        DEAD_LETTERS.labels(record.topic, reason).inc()
        log.warning("event.dead_lettered", reason=reason, error=error, attempts=attempts)


class DeadLetterMiddleware(BaseMiddleware):
    """Installed on the broker, so every subscriber has it; publishing passes through."""

    def __init__(
        self,
        msg: Any,
        /,
        *,
        context: ContextRepo,
        dead_letters: DeadLetters,
        retries: HandlerRetries,
    ) -> None:
        super().__init__(msg, context=context)
        self.dead_letters = dead_letters
        self.retries = retries

    async def consume_scope(self, call_next: CallNext, msg: StreamMessage[Any]) -> Any:
        group: str = getattr(self.context.get("handler_"), "group_id", None) or ""
        if isinstance(msg.raw_message, tuple | list):
            return await self._consume_batch(call_next, msg, group)
        record: Record = msg.raw_message
        with _bound(record):
            try:
                event = await msg.decode()
            except InvalidEvent as invalid:
                await self._dead_letter([record], group, "invalid", str(invalid), attempts=1)
                return None
            if not isinstance(event, CloudEvent):  # a subscriber not made by `subscribe`
                return await call_next(msg)
            with _bound_event(event):
                return await self._handle(call_next, msg, [record], group)

    async def _consume_batch(self, call_next: CallNext, msg: StreamMessage[Any], group: str) -> Any:
        records: list[Record] = list(msg.raw_message)
        try:
            await msg.decode()
        except InvalidRecords as invalid:
            for index, reason in invalid.reasons.items():
                with _bound(records[index]):
                    await self._dead_letter([records[index]], group, "invalid", reason, 1)
            records = [r for i, r in enumerate(records) if i not in invalid.reasons]
            if not records:
                return None
            _narrow(msg, records)
        try:
            async for attempt in self.retries.retrying(reraise=True):
                with attempt:
                    result = await call_next(msg)
        except Exception as error:
            log.warning(
                "events.batch_failed",
                topic=records[0].topic,
                events=len(records),
                error=f"{type(error).__name__}: {error}",
            )
            for record in records:
                _narrow(msg, [record])
                with _bound(record):
                    await self._handle(call_next, msg, [record], group)
            return None
        events: list[CloudEvent[Any]] = await msg.decode()  # type: ignore[assignment]
        for record, event in zip(records, events, strict=True):
            with _bound(record), _bound_event(event):
                log.info("event.handled", attempts=1, batch=len(records))
        return result

    async def _handle(
        self, call_next: CallNext, msg: StreamMessage[Any], records: list[Record], group: str
    ) -> Any:
        attempts = 0
        try:
            async for attempt in self.retries.retrying(reraise=False):
                with attempt:
                    attempts = attempt.retry_state.attempt_number
                    result = await call_next(msg)
        except RetryError as gave_up:
            cause = gave_up.last_attempt.exception()
            error = f"transient failure after {attempts} attempts: {type(cause).__name__}: {cause}"
            await self._dead_letter(records, group, "transient", error, attempts)
            return None
        except Exception as failure:  # a bug or a rule the event breaks: retrying won't help
            log.exception("event.handler_failed")
            error = f"handler failed: {type(failure).__name__}: {failure}"
            await self._dead_letter(records, group, "handler", error, attempts)
            return None
        log.info("event.handled", attempts=attempts)
        return result

    async def _dead_letter(
        self, records: Sequence[Record], group: str, reason: str, error: str, attempts: int
    ) -> None:
        for record in records:
            await self.dead_letters.send(
                record, group=group, reason=reason, error=error, attempts=attempts
            )


def _narrow(msg: StreamMessage[Any], records: Sequence[Record]) -> None:
    """Make a batch message carry only these records (its decoded value is read again)."""
    msg.body = [record.value for record in records]
    msg.clear_cache()


def _bound(record: Record) -> AbstractContextManager[Any]:
    """Where a record came from, on every log line about it."""
    return structlog.contextvars.bound_contextvars(
        topic=record.topic, partition=record.partition, offset=record.offset
    )


def _bound_event(event: CloudEvent[Any]) -> ExitStack:
    """Which event a record is, on every log line, and its correlation id on every event the
    handler causes."""
    stack = ExitStack()
    stack.enter_context(structlog.contextvars.bound_contextvars(event_id=event.id))
    stack.enter_context(correlated(event.correlationid))
    return stack

"""Reading topics to the end, without a consumer group, with progress on long reads."""

from __future__ import annotations

import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO, TypeAlias

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from hirestream.shared.cli.errors import CliError
from hirestream.shared.events.envelope import CloudEvent, EventType, InvalidEvent

Record: TypeAlias = "ConsumerRecord[Any, Any]"


@dataclass
class Progress:
    """'label: done of total' on stderr every few seconds; nothing for a short run."""

    label: str
    total: int
    unit: str = "records"
    every_s: float = 2.0
    stream: TextIO = field(default_factory=lambda: sys.stderr)
    done: int = 0
    _last: float = field(default_factory=time.monotonic, init=False)
    _said: bool = field(default=False, init=False)

    def advance(self, count: int = 1) -> None:
        self.done += count
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            self._say()

    def finish(self) -> None:
        if self._said:
            self._say()

    def _say(self) -> None:
        self._said = True
        print(f"{self.label}: {self.done:,} of {self.total:,} {self.unit}", file=self.stream)


async def read_to_end(
    consumer: AIOKafkaConsumer,
    partitions: Sequence[TopicPartition],
    *,
    label: str,
    stall_s: float = 30.0,
) -> AsyncIterator[Record]:
    """Every record of `partitions` from the beginning up to the end offsets seen at the start
    (what is published meanwhile is left for the next run), partition by partition in
    offset order."""
    if not partitions:
        return
    consumer.assign(list(partitions))
    beginning = await consumer.beginning_offsets(list(partitions))
    end = await consumer.end_offsets(list(partitions))
    pending = {tp for tp in partitions if end[tp] > beginning[tp]}
    progress = Progress(label, sum(end[tp] - beginning[tp] for tp in pending))
    for tp in pending:
        consumer.seek(tp, beginning[tp])
    last_record = time.monotonic()
    while pending:
        batch = await consumer.getmany(*pending, timeout_ms=1000)
        for tp, records in batch.items():
            for record in records:
                if record.offset >= end[tp]:
                    break
                yield record
            progress.advance(len(records))
        if batch:
            last_record = time.monotonic()
        elif time.monotonic() - last_record > stall_s:
            stalled = ", ".join(sorted(f"{tp.topic}/{tp.partition}" for tp in pending))
            raise CliError(f"no records came from {stalled} for {stall_s:g} s")
        pending = {tp for tp in pending if await consumer.position(tp) < end[tp]}
    progress.finish()


async def events_to_end(
    consumer: AIOKafkaConsumer,
    partitions: Sequence[TopicPartition],
    by_topic: dict[str, EventType[Any]],
    *,
    label: str,
) -> AsyncIterator[CloudEvent[Any] | None]:
    """The trusted events of `read_to_end`, parsed by their topic's type; None for a record
    that is not one (the live consumer dead-lettered it already)."""
    async for record in read_to_end(consumer, partitions, label=label):
        event_type = by_topic[record.topic]
        try:
            yield event_type.trusted(event_type.parse(record.value or b""))
        except InvalidEvent:
            yield None


async def read_one(
    consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int, *, stall_s: float = 30.0
) -> Record | None:
    """The record at `offset`, or None when the partition holds none there."""
    beginning = (await consumer.beginning_offsets([tp]))[tp]
    end = (await consumer.end_offsets([tp]))[tp]
    if not beginning <= offset < end:
        return None
    consumer.assign([tp])
    consumer.seek(tp, offset)
    started = time.monotonic()
    while time.monotonic() - started < stall_s:
        batch = await consumer.getmany(tp, timeout_ms=1000, max_records=1)
        for record in batch.get(tp, []):
            # A compacted partition may skip the offset: the next record is past it.
            return record if record.offset == offset else None
    raise CliError(f"no record came from {tp.topic}/{tp.partition} for {stall_s:g} s")

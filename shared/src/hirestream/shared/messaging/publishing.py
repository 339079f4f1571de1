"""Sending events: the records the outbox relay stored, and events published directly."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from faststream.kafka import KafkaBroker

from hirestream.shared.events.envelope import CloudEvent
from hirestream.shared.messaging.outbox import outbox_entry


class EventPublisher:
    def __init__(self, broker: KafkaBroker) -> None:
        self._broker = broker

    async def send(self, topic: str, key: bytes, value: bytes, headers: Mapping[str, str]) -> None:
        """One record; returns once the broker acknowledged it."""
        await self._broker.publish(value, topic, key=key, headers=dict(headers))

    async def publish(self, event: CloudEvent[Any]) -> None:
        """An event now, without an outbox: only for one a consumer derives from the record in
        hand before it commits that record's offset (the record is then the durable note
        that the event is owed: a crash redelivers it, and the event is derived again with
        the same id)."""
        entry = outbox_entry(event)
        await self.send(
            entry["topic"], entry["key"].encode(), entry["value"].encode(), entry["headers"]
        )

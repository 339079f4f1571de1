"""Gauges cheaper to read every few seconds than at every change: the outbox backlog as each
relay's last sweep found it, and each assigned partition's consumer lag."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import structlog
from faststream.kafka import KafkaBroker

from hirestream.shared.events.types import utc_now
from hirestream.shared.messaging.outbox import OutboxRelay
from hirestream.shared.metrics import CONSUMER_LAG, OUTBOX_OLDEST_AGE, OUTBOX_PENDING

log = structlog.get_logger(__name__)

# Prometheus scrapes every 15-30 s.
SAMPLE_INTERVAL_S = 10.0


class GaugeSampler:
    def __init__(self, relays: Sequence[OutboxRelay], broker: KafkaBroker) -> None:
        self._relays = relays
        self._broker = broker
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="gauge-sampler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                self._sample_outboxes()
                await self._sample_lag()
            except Exception as error:  # a gauge must never take the service down
                log.debug("metrics.sample_failed", error=type(error).__name__)
            await asyncio.sleep(SAMPLE_INTERVAL_S)

    def _sample_outboxes(self) -> None:
        for relay in self._relays:
            name = relay.collection.name
            backlog = relay.backlog
            OUTBOX_PENDING.labels(name).set(backlog.documents)
            oldest = backlog.oldest_recorded_at
            age = (utc_now() - oldest).total_seconds() if oldest else 0.0
            OUTBOX_OLDEST_AGE.labels(name).set(max(age, 0.0))

    async def _sample_lag(self) -> None:
        for subscriber in self._broker.subscribers:
            consumer = getattr(subscriber, "consumer", None)
            if consumer is None:
                continue
            group = getattr(subscriber, "group_id", "") or ""
            for partition in consumer.assignment():
                highwater = consumer.highwater(partition)
                if highwater is None:
                    continue
                position = await consumer.position(partition)
                CONSUMER_LAG.labels(group, partition.topic, str(partition.partition)).set(
                    max(highwater - position, 0)
                )

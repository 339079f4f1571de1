"""The clients of one service process: MongoDB, the Kafka broker and the outbox relays.

Start-up order: MongoDB indexes and Kafka topics (retried while either is not yet reachable),
the broker (producer, then subscribers), the outbox sweepers and the gauges. Shutdown reverses
it: subscribers finish the record in hand and commit, relays finish their sends, the producer
flushes, the MongoDB client closes. (uvicorn has already stopped taking requests and let those
in flight finish.)
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import structlog
from pymongo.asynchronous.collection import AsyncCollection
from tenacity import AsyncRetrying, stop_after_delay, wait_exponential_jitter

from hirestream.shared.events.envelope import CloudEvent, EventType
from hirestream.shared.messaging.broker import make_broker
from hirestream.shared.messaging.outbox import OutboxRelay, OutboxTiming
from hirestream.shared.messaging.publishing import EventPublisher
from hirestream.shared.messaging.subscriptions import (
    Subscription,
    consumed_event_types,
    subscribe,
)
from hirestream.shared.runtime.sampler import GaugeSampler
from hirestream.shared.runtime.topics import TopicPlan, ensure_topics
from hirestream.shared.settings import ServiceSettings
from hirestream.shared.storage.mongo import (
    CollectionIndexes,
    Document,
    ensure_indexes,
    make_mongo_client,
    ping,
)

log = structlog.get_logger(__name__)

# How long start-up keeps trying to reach Kafka and MongoDB before the process gives up.
STARTUP_PATIENCE_S = 120


class ServiceClients:
    def __init__(self, settings: ServiceSettings, *, name: str) -> None:
        self.settings = settings
        self.name = name
        self.source = f"hirestream/{name}"
        self.mongo = make_mongo_client(settings, app_name=f"hirestream-{name}")
        self.db = self.mongo[settings.mongodb_database]
        self.broker = make_broker(settings, client_id=f"hirestream-{name}")
        self.publisher = EventPublisher(self.broker)
        self.relays: list[OutboxRelay] = []
        self.indexes: list[CollectionIndexes] = []
        self.published: list[EventType[Any]] = []
        self.consumed: list[EventType[Any]] = []
        self._sampler = GaugeSampler(self.relays, self.broker)

    def publishes(self, *event_types: EventType[Any]) -> None:
        """Declare what this service publishes (through its outbox): for its topics, and for
        the AsyncAPI document."""
        for event_type in event_types:
            self.published.append(event_type)
            self.broker.publisher(
                event_type.topic,
                title=event_type.topic,
                description=(event_type.payload.__doc__ or "").strip() or None,
                schema=event_type.envelope,
            )

    def subscribe(self, subscriptions: Sequence[Subscription]) -> None:
        for subscription in subscriptions:
            subscribe(self.broker, subscription)
        known = {event_type.name for event_type in self.consumed}
        self.consumed += [t for t in consumed_event_types(subscriptions) if t.name not in known]

    def needs_indexes(self, *indexes: CollectionIndexes) -> None:
        self.indexes.extend(indexes)

    def outbox_relay(self, collection: AsyncCollection[Document]) -> OutboxRelay:
        timing = OutboxTiming(lease=timedelta(seconds=self.settings.outbox_lease_s))
        relay = OutboxRelay(collection, self.publisher.send, timing)
        self.relays.append(relay)
        return relay

    async def publish(self, event: CloudEvent[Any]) -> None:
        await self.publisher.publish(event)

    @property
    def topics(self) -> TopicPlan:
        return TopicPlan(published=self.published, consumed=self.consumed)

    async def start(self) -> None:
        async for attempt in AsyncRetrying(
            stop=stop_after_delay(STARTUP_PATIENCE_S),
            wait=wait_exponential_jitter(multiplier=0.5, max=10),
            reraise=True,
            before_sleep=lambda state: log.warning(
                "startup.retrying",
                attempt=state.attempt_number,
                error=repr(state.outcome.exception()) if state.outcome else None,
            ),
        ):
            with attempt:
                await ensure_indexes(self.db, self.indexes)
                await ensure_topics(self.settings, self.topics)
        await self.broker.start()
        for relay in self.relays:
            relay.start()
        self._sampler.start()
        log.info("service.started", topics=self.topics.names())

    async def stop(self) -> None:
        timeout = self.settings.shutdown_timeout_s
        await self._sampler.stop()
        # Relays first: their sends need the producer, which the broker's stop disconnects.
        for relay in self.relays:
            await relay.stop(timeout_s=timeout / 2)
        await self.broker.stop()  # subscribers finish their record and commit; producer flushes
        await self.mongo.close()
        log.info("service.stopped")

    async def check_mongodb(self) -> None:
        await ping(self.mongo)

    async def check_kafka(self) -> None:
        if not self.broker.running or not await self.broker.ping(timeout=1.5):
            raise ConnectionError("Kafka broker does not answer")

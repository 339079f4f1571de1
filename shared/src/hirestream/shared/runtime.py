"""What one service process holds and how it starts and stops: the mechanism behind each
service's composition root (`app.py`), which supplies the service's own routes, handlers and
collections.

Start-up order: MongoDB indexes, the Kafka broker (producer, then subscribers), topics, outbox
sweepers. Shutdown reverses it: uvicorn first stops taking requests and lets those in flight
finish, then subscribers finish the record in hand and commit, the outbox relays finish their
sends, the producer flushes, and the MongoDB client closes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import timedelta
from typing import Any, TypeVar

import structlog
import uvicorn
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse, JSONResponse
from faststream.kafka.security import parse_security
from faststream.specification import AsyncAPI
from faststream.specification.asyncapi.site import get_asyncapi_html
from pymongo.asynchronous.collection import AsyncCollection
from tenacity import AsyncRetrying, stop_after_delay, wait_exponential_jitter

from hirestream.shared.events.envelope import CloudEvent, EventType
from hirestream.shared.events.types import utc_now
from hirestream.shared.logging import configure_logging
from hirestream.shared.messaging.broker import kafka_security, make_broker
from hirestream.shared.messaging.outbox import OutboxRelay, OutboxTiming, outbox_entry
from hirestream.shared.privacy import ERASURES, ErasureLedger
from hirestream.shared.settings import ServiceSettings, load_settings
from hirestream.shared.storage.mongo import (
    CollectionIndexes,
    Document,
    ensure_indexes,
    make_mongo_client,
    ping,
)
from hirestream.shared.web.auth import JwtVerifier
from hirestream.shared.web.correlation import CorrelationMiddleware
from hirestream.shared.web.guard import RequestGuard
from hirestream.shared.web.health import health_router
from hirestream.shared.web.metrics import (
    CONSUMER_LAG,
    EVENTS_PUBLISHED,
    OUTBOX_OLDEST_AGE,
    OUTBOX_PENDING,
    install_metrics,
)
from hirestream.shared.web.problems import install_problem_handlers

log = structlog.get_logger(__name__)

# How long start-up keeps trying to reach Kafka and MongoDB before the process gives up.
STARTUP_PATIENCE_S = 120
# Prometheus scrapes every 15-30 s; the outbox gauges cost two queries per relay.
METRICS_SAMPLE_INTERVAL_S = 10.0

SettingsT = TypeVar("SettingsT", bound=ServiceSettings)
Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


class ServiceRuntime:
    """The clients of one service process: MongoDB, the Kafka broker and the outbox relays."""

    def __init__(
        self,
        settings: ServiceSettings,
        *,
        name: str,
        version: str = "0.1.0",
        published: Sequence[EventType[Any]] = (),
        consumed: Sequence[EventType[Any]] = (),
        indexes: Sequence[CollectionIndexes] = (),
    ) -> None:
        self.settings = settings
        self.name = name
        self.version = version
        self.source = f"hirestream/{name}"
        self.mongo = make_mongo_client(settings, app_name=f"hirestream-{name}")
        self.db = self.mongo[settings.mongodb_database]
        self.broker = make_broker(settings, client_id=f"hirestream-{name}")
        self.published = tuple(published)
        self.consumed = tuple(consumed)
        self.indexes = tuple(indexes)
        self.relays: list[OutboxRelay] = []
        self._sampler: asyncio.Task[None] | None = None
        for event_type in self.published:
            # Declared for the AsyncAPI document; the outbox relay does the publishing.
            self.broker.publisher(
                event_type.topic,
                title=event_type.topic,
                description=(event_type.payload.__doc__ or "").strip() or None,
                schema=CloudEvent[event_type.payload],  # type: ignore[name-defined]
            )

    def erasure_ledger(self) -> ErasureLedger:
        """This service's record of candidate erasures, with its own outbox relay."""
        collection = self.db[ERASURES]
        return ErasureLedger(
            collection, self.outbox_relay(collection), service=self.name, source=self.source
        )

    def outbox_relay(self, collection: AsyncCollection[Document]) -> OutboxRelay:
        timing = OutboxTiming(lease=timedelta(seconds=self.settings.outbox_lease_s))
        relay = OutboxRelay(collection, self._publish, timing)
        self.relays.append(relay)
        return relay

    async def _publish(
        self, topic: str, key: bytes, value: bytes, headers: Mapping[str, str]
    ) -> None:
        await self.broker.publish(value, topic, key=key, headers=dict(headers))
        EVENTS_PUBLISHED.labels(topic).inc()

    async def publish_event(self, event: CloudEvent[Any]) -> None:
        """Publish an event now, without an outbox. Only for an event a consumer derives from
        the record in hand, before it commits that record's offset: the record itself is then
        the durable note that the event is owed (a crash redelivers it and the consumer derives
        the event again, with the same id)."""
        entry = outbox_entry(event)
        await self._publish(
            entry["topic"], entry["key"].encode(), entry["value"].encode(), entry["headers"]
        )

    @property
    def personal_data_topics(self) -> set[str]:
        return {
            event_type.topic
            for event_type in (*self.published, *self.consumed)
            if event_type.carries_personal_data
        } | {
            event_type.dlq_topic for event_type in self.consumed if event_type.carries_personal_data
        }

    @property
    def topics(self) -> list[str]:
        names = {event_type.topic for event_type in (*self.published, *self.consumed)}
        names |= {event_type.dlq_topic for event_type in self.consumed}
        return sorted(names)

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
                await self._ensure_topics()
        await self.broker.start()
        for relay in self.relays:
            relay.start()
        self._sampler = asyncio.create_task(self._sample_metrics(), name="metrics-sampler")
        log.info("service.started", topics=self.topics)

    async def _sample_metrics(self) -> None:
        """Gauges that are cheaper to read every few seconds than at every change: the outbox
        backlog as its last sweep found it, and each assigned partition's consumer lag."""
        while True:
            try:
                for relay in self.relays:
                    name = relay.collection.name
                    backlog = relay.backlog
                    OUTBOX_PENDING.labels(name).set(backlog.documents)
                    oldest = backlog.oldest_recorded_at
                    age = (utc_now() - oldest).total_seconds() if oldest else 0.0
                    OUTBOX_OLDEST_AGE.labels(name).set(max(age, 0.0))
                for subscriber in self.broker.subscribers:
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
            except Exception as error:  # a metric must never take the service down
                log.debug("metrics.sample_failed", error=type(error).__name__)
            await asyncio.sleep(METRICS_SAMPLE_INTERVAL_S)

    async def _ensure_topics(self) -> None:
        """Create the topics this service uses, so that consumers are assigned partitions at
        once. Where topics are managed (Strimzi KafkaTopic in Kubernetes) they already exist."""
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.settings.kafka_bootstrap_servers,
            **parse_security(kafka_security(self.settings)),
        )
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            missing = [name for name in self.topics if name not in existing]
            if missing:
                with contextlib.suppress(TopicAlreadyExistsError):  # a replica was quicker
                    await admin.create_topics(
                        [
                            NewTopic(
                                name,
                                num_partitions=self.settings.kafka_topic_partitions,
                                replication_factor=self.settings.kafka_topic_replication,
                                topic_configs=self._topic_config(name),
                            )
                            for name in missing
                        ]
                    )
        finally:
            await admin.close()

    def _topic_config(self, topic: str) -> dict[str, str]:
        if topic in self.personal_data_topics:
            return {"retention.ms": str(self.settings.kafka_personal_data_retention_ms)}
        kept_forever = {t.topic for t in (*self.published, *self.consumed) if t.kept_forever}
        if topic in kept_forever:
            return {"retention.ms": "-1"}
        return {}

    async def stop(self) -> None:
        timeout = self.settings.shutdown_timeout_s
        if self._sampler is not None:
            self._sampler.cancel()
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

    def asyncapi(self) -> dict[str, Any]:
        spec = AsyncAPI(
            self.broker,
            title=f"hirestream {self.name}",
            version=self.version,
            description=f"Events the {self.name} service publishes and consumes.",
        )
        result: dict[str, Any] = spec.to_specification().to_jsonable()
        return result

    def http_app(
        self,
        routers: Iterable[APIRouter],
        *,
        description: str,
        extra_lifespan: Lifespan | None = None,
    ) -> FastAPI:
        """The FastAPI application: the service's routes plus health, metrics and docs.

        `extra_lifespan` runs the service's own background work (inside the clients' life:
        started after them, stopped before them)."""

        @asynccontextmanager
        async def lifespan(app: FastAPI) -> AsyncIterator[None]:
            await self.start()
            try:
                if extra_lifespan is None:
                    yield
                else:
                    async with extra_lifespan(app):
                        yield
            finally:
                await self.stop()

        app = FastAPI(
            title=f"hirestream {self.name}",
            version=self.version,
            description=description,
            lifespan=lifespan,
            # What any route may answer, from the mechanisms around the routes.
            responses={
                400: {"description": "the body is not valid JSON"},
                413: {"description": "the body is larger than MAX_BODY_BYTES"},
                429: {"description": "too many writes; Retry-After says when to retry"},
                503: {"description": "the database is unavailable; Retry-After"},
            },
        )
        app.state.runtime = self
        app.state.jwt_verifier = JwtVerifier(
            self.settings.jwt_secret.get_secret_value() if self.settings.jwt_secret else None,
            jwks_url=self.settings.jwt_jwks_url,
            issuer=self.settings.jwt_issuer,
            audience=self.settings.jwt_audience,
        )
        install_problem_handlers(app)
        # Added innermost first: metrics see every response (413 and 429 too), and the
        # guard's refusals carry the request's correlation id.
        app.add_middleware(
            RequestGuard,
            max_body_bytes=self.settings.max_body_bytes,
            max_json_depth=self.settings.max_json_depth,
            write_limit=self.settings.rate_limit_writes,
        )
        app.add_middleware(CorrelationMiddleware)
        install_metrics(app)
        app.include_router(
            health_router({"mongodb": self.check_mongodb, "kafka": self.check_kafka})
        )
        for router in routers:
            app.include_router(router)

        @app.get("/asyncapi.json", include_in_schema=False)
        async def asyncapi_json() -> JSONResponse:
            return JSONResponse(self.asyncapi())

        @app.get("/asyncapi", include_in_schema=False)
        async def asyncapi_html() -> HTMLResponse:
            spec = AsyncAPI(self.broker, title=f"hirestream {self.name}", version=self.version)
            return HTMLResponse(get_asyncapi_html(spec.to_specification()))

        return app


def run_service(
    name: str,
    settings_class: type[SettingsT],
    create_app: Callable[[SettingsT], FastAPI],
) -> None:
    """What each service's `__main__` does: settings (or one line and exit 2), logging, serve."""
    settings = load_settings(settings_class)
    configure_logging(name, settings.log_level, settings.log_format)
    serve(create_app(settings), settings)


def serve(app: FastAPI, settings: ServiceSettings) -> None:
    """Run the HTTP server and, through the app's lifespan, the Kafka side in one process.

    On SIGTERM uvicorn stops accepting connections, waits for requests in flight (at most
    `SHUTDOWN_TIMEOUT_S`), then runs the lifespan shutdown above.
    """
    uvicorn.run(
        app,
        host="0.0.0.0",  # noqa: S104 - in a container the pod's address is the one to serve on
        port=settings.port,
        log_config=None,  # keep our structlog set-up
        access_log=False,  # the metrics middleware counts requests; no per-request log lines
        timeout_graceful_shutdown=int(settings.shutdown_timeout_s),
        proxy_headers=True,
    )

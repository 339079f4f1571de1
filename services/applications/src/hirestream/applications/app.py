"""Composition root of the applications service: settings, clients, routes, consumers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import structlog
from fastapi import FastAPI
from pydantic import Field

from hirestream.applications.api import applications_router, privacy_router
from hirestream.applications.consumers import register_consumers, register_privacy_consumers
from hirestream.applications.store import (
    APPLICATIONS,
    ERASURE_REQUESTS,
    INDEXES,
    POSTINGS_VIEW,
    ApplicationStore,
    ErasureRequestStore,
    PostingReadModel,
)
from hirestream.shared.events.applications import (
    APPLICATION_STATUS_CHANGED,
    APPLICATION_SUBMITTED,
)
from hirestream.shared.events.postings import POSTING_CLOSED, POSTING_CREATED, POSTING_UPDATED
from hirestream.shared.events.privacy import CANDIDATE_ERASED, CANDIDATE_ERASURE_REQUESTED
from hirestream.shared.events.types import utc_now
from hirestream.shared.privacy import ERASURE_INDEXES
from hirestream.shared.runtime import ServiceRuntime
from hirestream.shared.settings import DatabaseName, Port, ServiceSettings

log = structlog.get_logger(__name__)


class ApplicationsSettings(ServiceSettings):
    port: Port = 8002
    mongodb_database: DatabaseName = "applications"
    # Final applications are anonymised this long after their last change, unless the
    # candidate applied again since.
    retention_days: float = Field(default=180, gt=0)
    retention_sweep_interval_s: float = Field(default=3600, gt=0)


async def apply_retention(store: ApplicationStore, *, period: timedelta, interval_s: float) -> None:
    """The scheduled retention job: every `interval_s`, anonymise what outlived `period`."""
    while True:
        try:
            anonymised = await store.anonymise_expired(utc_now() - period)
            if anonymised:
                log.info("retention.anonymised", applications=anonymised)
        except Exception as error:  # database away: next round
            log.warning("retention.failed", error=type(error).__name__)
        await asyncio.sleep(interval_s)


def create_app(settings: ApplicationsSettings) -> FastAPI:
    runtime = ServiceRuntime(
        settings,
        name="applications",
        published=[
            APPLICATION_SUBMITTED,
            APPLICATION_STATUS_CHANGED,
            CANDIDATE_ERASURE_REQUESTED,
            CANDIDATE_ERASED,
        ],
        consumed=[
            POSTING_CREATED,
            POSTING_UPDATED,
            POSTING_CLOSED,
            CANDIDATE_ERASURE_REQUESTED,
            CANDIDATE_ERASED,
        ],
        indexes=[*INDEXES, ERASURE_INDEXES],
    )
    read_model = PostingReadModel(runtime.db[POSTINGS_VIEW])
    register_consumers(runtime.broker, read_model)
    store = ApplicationStore(runtime.db[APPLICATIONS])
    relay = runtime.outbox_relay(store.collection)
    requests = ErasureRequestStore(runtime.db[ERASURE_REQUESTS])
    requests_relay = runtime.outbox_relay(requests.collection)
    register_privacy_consumers(runtime.broker, runtime.erasure_ledger(), store, requests)

    @asynccontextmanager
    async def retention(_: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(
            apply_retention(
                store,
                period=timedelta(days=settings.retention_days),
                interval_s=settings.retention_sweep_interval_s,
            ),
            name="retention",
        )
        try:
            yield
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    return runtime.http_app(
        [
            applications_router(store, read_model, relay, source=runtime.source),
            privacy_router(requests, requests_relay, source=runtime.source),
        ],
        extra_lifespan=retention,
        description="Applications to postings and their status workflow; publishes "
        "application.*; keeps a read model of postings from posting.* events.",
    )

"""Composition root of the postings service: settings, clients, stores, routes, handlers, and
the expiry job."""

from __future__ import annotations

from datetime import timedelta

import structlog
from fastapi import FastAPI
from pydantic import Field, model_validator

from hirestream.postings import handlers, services
from hirestream.postings.api import postings_router
from hirestream.postings.domain import DEFAULT_TTL_DAYS, MAX_TTL_DAYS, ExpiryPolicy
from hirestream.postings.services import PostingsUnitOfWork
from hirestream.postings.store import COLLECTION, INDEXES, PostingStore
from hirestream.shared.events.postings import POSTING_CLOSED, POSTING_CREATED, POSTING_UPDATED
from hirestream.shared.events.privacy import CANDIDATE_ERASED
from hirestream.shared.events.types import utc_now
from hirestream.shared.privacy import ERASURE_INDEXES, ERASURES, Erasure, ErasureLedger
from hirestream.shared.runtime.clients import ServiceClients
from hirestream.shared.service_layer.unit_of_work import UnitOfWork
from hirestream.shared.settings import DatabaseName, Port, ServiceSettings
from hirestream.shared.web.app import every_interval, service_app

NAME = "postings"
log = structlog.get_logger(__name__)


class PostingsSettings(ServiceSettings):
    port: Port = 8001
    mongodb_database: DatabaseName = NAME
    # A posting published without an end closes itself (reason `expired`) this long after; an
    # end the employer names, on publishing or changing it, is at most the maximum ahead.
    posting_default_ttl_days: float = Field(default=DEFAULT_TTL_DAYS, gt=0, le=3650)
    posting_max_ttl_days: float = Field(default=MAX_TTL_DAYS, gt=0, le=3650)
    # How often the expiry job looks for open postings past their end: how late one may close.
    expiry_sweep_interval_s: float = Field(default=60, gt=0)

    @model_validator(mode="after")
    def _default_within_max(self) -> PostingsSettings:
        if self.posting_default_ttl_days > self.posting_max_ttl_days:
            raise ValueError("POSTING_DEFAULT_TTL_DAYS must not exceed POSTING_MAX_TTL_DAYS")
        return self

    @property
    def expiry(self) -> ExpiryPolicy:
        return ExpiryPolicy(
            default=timedelta(days=self.posting_default_ttl_days),
            longest=timedelta(days=self.posting_max_ttl_days),
        )


def create_app(settings: PostingsSettings) -> FastAPI:
    clients = ServiceClients(settings, name=NAME)
    clients.publishes(POSTING_CREATED, POSTING_UPDATED, POSTING_CLOSED, CANDIDATE_ERASED)
    clients.needs_indexes(INDEXES, ERASURE_INDEXES)
    postings = PostingStore(clients.db[COLLECTION])
    postings_relay = clients.outbox_relay(postings.collection)
    ledger = ErasureLedger(clients.db[ERASURES])
    ledger_relay = clients.outbox_relay(ledger.collection)

    def unit_of_work() -> PostingsUnitOfWork:
        return PostingsUnitOfWork(postings, postings_relay, source=clients.source)

    def erasures() -> UnitOfWork[Erasure]:
        return UnitOfWork(ledger, ledger_relay, source=clients.source)

    clients.subscribe(handlers.subscriptions(erasures))

    # Every replica sweeps: each close is conditional on the version it read, so replicas
    # racing close a posting once, and a sweep cut short leaves the rest to the next.
    async def expiry() -> None:
        closed = await services.expire_postings(unit_of_work, now=utc_now())
        if closed:
            log.info("postings.expired", count=closed)

    return service_app(
        clients,
        [postings_router(unit_of_work, expiry=settings.expiry)],
        background=every_interval(settings.expiry_sweep_interval_s, expiry, name="expiry"),
        description="Job postings: publish, change, close and search; closes them when they "
        "expire; publishes posting.*",
    )

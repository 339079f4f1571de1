"""Composition root of the applications service: settings, clients, stores, routes, handlers,
and the retention job."""

from __future__ import annotations

from datetime import timedelta

import structlog
from fastapi import FastAPI
from pydantic import Field

from hirestream.applications import handlers, services
from hirestream.applications.api import applications_router, pipeline_router, privacy_router
from hirestream.applications.services import ApplicationsUnitOfWork, ErasureUnitOfWork
from hirestream.applications.store import (
    APPLICATIONS,
    ERASURE_REQUESTS,
    INDEXES,
    PIPELINE,
    POSTINGS_VIEW,
    ApplicationStore,
    ErasureRequestStore,
    PipelineProjection,
    PostingReadModel,
)
from hirestream.shared.events.applications import (
    APPLICATION_STATUS_CHANGED,
    APPLICATION_SUBMITTED,
)
from hirestream.shared.events.privacy import CANDIDATE_ERASED, CANDIDATE_ERASURE_REQUESTED
from hirestream.shared.events.types import utc_now
from hirestream.shared.privacy import ERASURE_INDEXES, ERASURES, Erasure, ErasureLedger
from hirestream.shared.runtime.clients import ServiceClients
from hirestream.shared.service_layer.unit_of_work import UnitOfWork
from hirestream.shared.settings import DatabaseName, Port, ServiceSettings
from hirestream.shared.web.app import every_interval, service_app

NAME = "applications"
log = structlog.get_logger(__name__)


class ApplicationsSettings(ServiceSettings):
    port: Port = 8002
    mongodb_database: DatabaseName = NAME
    # Final applications are anonymised this long after their last change, unless the
    # candidate applied again since.
    retention_days: float = Field(default=180, gt=0)
    retention_sweep_interval_s: float = Field(default=3600, gt=0)


def create_app(settings: ApplicationsSettings) -> FastAPI:
    clients = ServiceClients(settings, name=NAME)
    clients.publishes(
        APPLICATION_SUBMITTED,
        APPLICATION_STATUS_CHANGED,
        CANDIDATE_ERASURE_REQUESTED,
        CANDIDATE_ERASED,
    )
    clients.needs_indexes(*INDEXES, ERASURE_INDEXES)
    applications = ApplicationStore(clients.db[APPLICATIONS])
    applications_relay = clients.outbox_relay(applications.collection)
    postings = PostingReadModel(clients.db[POSTINGS_VIEW])
    journeys = PipelineProjection(clients.db[PIPELINE])
    requests = ErasureRequestStore(clients.db[ERASURE_REQUESTS])
    requests_relay = clients.outbox_relay(requests.collection)
    ledger = ErasureLedger(clients.db[ERASURES])
    ledger_relay = clients.outbox_relay(ledger.collection)

    def unit_of_work() -> ApplicationsUnitOfWork:
        return ApplicationsUnitOfWork(
            applications, postings, applications_relay, source=clients.source
        )

    def erasure_requests() -> ErasureUnitOfWork:
        return ErasureUnitOfWork(requests, requests_relay, source=clients.source)

    def erasures() -> UnitOfWork[Erasure]:
        return UnitOfWork(ledger, ledger_relay, source=clients.source)

    clients.subscribe(handlers.subscriptions(postings, applications, requests, erasures, journeys))

    period = timedelta(days=settings.retention_days)

    async def retention() -> None:
        await services.apply_retention(utc_now() - period, applications)

    return service_app(
        clients,
        [
            applications_router(unit_of_work),
            pipeline_router(postings, journeys),
            privacy_router(erasure_requests),
        ],
        background=every_interval(settings.retention_sweep_interval_s, retention, name="retention"),
        description="Applications to postings and their status workflow; publishes "
        "application.*; keeps a read model of postings from posting.* events, and a posting's "
        "pipeline from its own application.* events.",
    )

"""Composition root of the applications service: settings, clients, routes, consumers."""

from __future__ import annotations

from fastapi import FastAPI

from hirestream.applications.api import applications_router
from hirestream.applications.consumers import register_consumers
from hirestream.applications.store import (
    APPLICATIONS,
    INDEXES,
    POSTINGS_VIEW,
    ApplicationStore,
    PostingReadModel,
)
from hirestream.shared.events.applications import (
    APPLICATION_STATUS_CHANGED,
    APPLICATION_SUBMITTED,
)
from hirestream.shared.events.postings import POSTING_CLOSED, POSTING_CREATED, POSTING_UPDATED
from hirestream.shared.runtime import ServiceRuntime
from hirestream.shared.settings import DatabaseName, Port, ServiceSettings


class ApplicationsSettings(ServiceSettings):
    port: Port = 8002
    mongodb_database: DatabaseName = "applications"


def create_app(settings: ApplicationsSettings) -> FastAPI:
    runtime = ServiceRuntime(
        settings,
        name="applications",
        published=[APPLICATION_SUBMITTED, APPLICATION_STATUS_CHANGED],
        consumed=[POSTING_CREATED, POSTING_UPDATED, POSTING_CLOSED],
        indexes=INDEXES,
    )
    read_model = PostingReadModel(runtime.db[POSTINGS_VIEW])
    register_consumers(runtime.broker, read_model)
    store = ApplicationStore(runtime.db[APPLICATIONS])
    relay = runtime.outbox_relay(store.collection)
    return runtime.http_app(
        [applications_router(store, read_model, relay, source=runtime.source)],
        description="Applications to postings and their status workflow; publishes "
        "application.*; keeps a read model of postings from posting.* events.",
    )

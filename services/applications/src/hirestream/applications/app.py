"""Composition root of the applications service: settings, clients, routes, consumers."""

from __future__ import annotations

from fastapi import FastAPI

from hirestream.applications.api import applications_router
from hirestream.applications.consumers import register_consumers
from hirestream.applications.store import INDEXES, POSTINGS_VIEW, PostingReadModel
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
        consumed=[POSTING_CREATED, POSTING_UPDATED, POSTING_CLOSED],
        indexes=INDEXES,
    )
    register_consumers(runtime.broker, PostingReadModel(runtime.db[POSTINGS_VIEW]))
    return runtime.http_app(
        [applications_router()],
        description="Applications to postings; keeps a read model of postings from events.",
    )

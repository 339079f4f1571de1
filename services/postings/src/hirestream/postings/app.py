"""Composition root of the postings service: settings, clients, stores, routes, handlers."""

from __future__ import annotations

from fastapi import FastAPI

from hirestream.postings import handlers
from hirestream.postings.api import postings_router
from hirestream.postings.services import PostingsUnitOfWork
from hirestream.postings.store import COLLECTION, INDEXES, PostingStore
from hirestream.shared.events.postings import POSTING_CLOSED, POSTING_CREATED, POSTING_UPDATED
from hirestream.shared.events.privacy import CANDIDATE_ERASED
from hirestream.shared.privacy import ERASURE_INDEXES, ERASURES, Erasure, ErasureLedger
from hirestream.shared.runtime.clients import ServiceClients
from hirestream.shared.service_layer.unit_of_work import UnitOfWork
from hirestream.shared.settings import DatabaseName, Port, ServiceSettings
from hirestream.shared.web.app import service_app

NAME = "postings"


class PostingsSettings(ServiceSettings):
    port: Port = 8001
    mongodb_database: DatabaseName = NAME


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
    return service_app(
        clients,
        [postings_router(unit_of_work)],
        description="Job postings: publish, change, close and search; publishes posting.*",
    )

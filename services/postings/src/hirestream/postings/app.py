"""Composition root of the postings service: settings, clients, routes, lifespan."""

from __future__ import annotations

from fastapi import FastAPI

from hirestream.postings.api import postings_router
from hirestream.postings.consumers import register_consumers
from hirestream.postings.store import COLLECTION, INDEXES, PostingStore
from hirestream.shared.events.postings import POSTING_CLOSED, POSTING_CREATED, POSTING_UPDATED
from hirestream.shared.events.privacy import CANDIDATE_ERASED, CANDIDATE_ERASURE_REQUESTED
from hirestream.shared.privacy import ERASURE_INDEXES
from hirestream.shared.runtime import ServiceRuntime
from hirestream.shared.settings import DatabaseName, Port, ServiceSettings


class PostingsSettings(ServiceSettings):
    port: Port = 8001
    mongodb_database: DatabaseName = "postings"


def create_app(settings: PostingsSettings) -> FastAPI:
    runtime = ServiceRuntime(
        settings,
        name="postings",
        published=[POSTING_CREATED, POSTING_UPDATED, POSTING_CLOSED, CANDIDATE_ERASED],
        consumed=[CANDIDATE_ERASURE_REQUESTED],
        indexes=[*INDEXES, ERASURE_INDEXES],
    )
    store = PostingStore(runtime.db[COLLECTION])
    register_consumers(runtime.broker, runtime.erasure_ledger())
    relay = runtime.outbox_relay(store.collection)
    return runtime.http_app(
        [postings_router(store, relay, source=runtime.source)],
        description="Job postings: publish, change, close and search; publishes posting.*",
    )

"""Composition root of the notifications service: settings, clients, routes, consumers."""

from __future__ import annotations

from fastapi import FastAPI

from hirestream.notifications.api import notifications_router
from hirestream.notifications.consumers import register_consumers
from hirestream.notifications.store import ANNOUNCED_POSTINGS, INDEXES, AnnouncedPostingStore
from hirestream.shared.events.postings import POSTING_CREATED
from hirestream.shared.runtime import ServiceRuntime
from hirestream.shared.settings import DatabaseName, Port, ServiceSettings


class NotificationsSettings(ServiceSettings):
    port: Port = 8003
    mongodb_database: DatabaseName = "notifications"


def create_app(settings: NotificationsSettings) -> FastAPI:
    runtime = ServiceRuntime(
        settings, name="notifications", consumed=[POSTING_CREATED], indexes=INDEXES
    )
    register_consumers(runtime.broker, AnnouncedPostingStore(runtime.db[ANNOUNCED_POSTINGS]))
    return runtime.http_app(
        [notifications_router()],
        description="Tells people and services of what happened: inbox, email, webhooks, alerts.",
    )

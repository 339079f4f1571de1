"""Composition root of the notifications service: settings, clients, routes, consumers,
and the delivery worker."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from pydantic import EmailStr, Field, SecretStr

from hirestream.notifications.api import notifications_router
from hirestream.notifications.consumers import Notifier, register_consumers
from hirestream.notifications.delivery import (
    SEND_CONCURRENCY,
    DeliveryWorker,
    RetryPolicy,
    SmtpMailer,
    WebhookSender,
    webhook_transport,
)
from hirestream.notifications.store import (
    ALERTS,
    INDEXES,
    NOTIFICATIONS,
    PREFERENCES,
    WEBHOOKS,
    AlertStore,
    FactStore,
    NotificationStore,
    PreferenceStore,
    WebhookStore,
)
from hirestream.shared.events.applications import (
    APPLICATION_STATUS_CHANGED,
    APPLICATION_SUBMITTED,
)
from hirestream.shared.events.notifications import NOTIFICATION_DELIVERED
from hirestream.shared.events.postings import POSTING_CREATED
from hirestream.shared.events.privacy import CANDIDATE_ERASED, CANDIDATE_ERASURE_REQUESTED
from hirestream.shared.privacy import ERASURE_INDEXES
from hirestream.shared.runtime import ServiceRuntime
from hirestream.shared.settings import DatabaseName, Port, ServiceSettings


class NotificationsSettings(ServiceSettings):
    port: Port = 8003
    mongodb_database: DatabaseName = "notifications"
    smtp_from: EmailStr = "notifications@hirestream.dev"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    # Webhooks may target plain http and private or loopback addresses only when this is
    # true: local runs and tests. In production it stays false (SSRF protection).
    webhook_allow_private: bool = False
    webhook_timeout_s: float = Field(default=5.0, gt=0, le=60)
    delivery_max_attempts: int = Field(default=5, ge=1, le=20)
    delivery_backoff_initial_s: float = Field(default=1.0, gt=0)
    delivery_backoff_max_s: float = Field(default=60.0, gt=0)


def create_app(settings: NotificationsSettings) -> FastAPI:
    runtime = ServiceRuntime(
        settings,
        name="notifications",
        published=[NOTIFICATION_DELIVERED, CANDIDATE_ERASED],
        consumed=[
            POSTING_CREATED,
            APPLICATION_SUBMITTED,
            APPLICATION_STATUS_CHANGED,
            CANDIDATE_ERASURE_REQUESTED,
        ],
        indexes=[*INDEXES, ERASURE_INDEXES],
    )
    db = runtime.db
    notifications = NotificationStore(db[NOTIFICATIONS])
    preferences = PreferenceStore(db[PREFERENCES])
    alerts = AlertStore(db[ALERTS])
    webhooks = WebhookStore(db[WEBHOOKS])
    # Sends the `notification.delivered` events a delivery could not publish as it ended.
    runtime.outbox_relay(notifications.collection)
    http = httpx.AsyncClient(
        transport=webhook_transport(allow_private=settings.webhook_allow_private),
        timeout=settings.webhook_timeout_s,
        follow_redirects=False,
        trust_env=False,
    )

    mailer = SmtpMailer(
        host=settings.smtp_host,
        port=settings.smtp_port,
        sender=str(settings.smtp_from),
        username=settings.smtp_username,
        password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
        start_tls=settings.smtp_starttls,
        pool_size=SEND_CONCURRENCY,
    )
    worker = DeliveryWorker(
        notifications,
        mailer,
        WebhookSender(http, allow_private=settings.webhook_allow_private),
        webhooks.by_id,
        runtime.publish_event,
        source=runtime.source,
        policy=RetryPolicy(
            max_attempts=settings.delivery_max_attempts,
            initial_backoff_s=settings.delivery_backoff_initial_s,
            max_backoff_s=settings.delivery_backoff_max_s,
        ),
    )
    notifier = Notifier(
        notifications=notifications,
        preferences=preferences,
        alerts=alerts,
        webhooks=webhooks,
        facts=FactStore(db),
        publish=runtime.publish_event,
        worker=worker,
        erasures=runtime.erasure_ledger(),
        source=runtime.source,
    )
    register_consumers(runtime.broker, notifier)

    @asynccontextmanager
    async def delivery(_: FastAPI) -> AsyncIterator[None]:
        worker.start()
        try:
            yield
        finally:
            await worker.stop()
            await mailer.close()
            await http.aclose()

    return runtime.http_app(
        [
            notifications_router(
                notifications,
                preferences,
                alerts,
                webhooks,
                allow_private_webhooks=settings.webhook_allow_private,
            )
        ],
        description="Tells people and services what happened: inbox, email, webhooks, alerts.",
        extra_lifespan=delivery,
    )

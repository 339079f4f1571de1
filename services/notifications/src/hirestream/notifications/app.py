"""Composition root of the notifications service: settings, clients, stores, the delivery
worker, routes and handlers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from pydantic import EmailStr, Field, SecretStr

from hirestream.notifications import handlers
from hirestream.notifications.api import notifications_router
from hirestream.notifications.delivery import SEND_CONCURRENCY, DeliverySchedule, DeliveryWorker
from hirestream.notifications.email import SmtpMailer
from hirestream.notifications.services import NotificationsUnitOfWork
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
from hirestream.notifications.webhooks import WebhookSender, webhook_transport
from hirestream.shared.events.notifications import NOTIFICATION_DELIVERED
from hirestream.shared.events.privacy import CANDIDATE_ERASED
from hirestream.shared.privacy import ERASURE_INDEXES, ERASURES, Erasure, ErasureLedger
from hirestream.shared.runtime.clients import ServiceClients
from hirestream.shared.service_layer.unit_of_work import UnitOfWork
from hirestream.shared.settings import DatabaseName, Port, ServiceSettings
from hirestream.shared.web.app import service_app

NAME = "notifications"


class NotificationsSettings(ServiceSettings):
    port: Port = 8003
    mongodb_database: DatabaseName = NAME
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
    clients = ServiceClients(settings, name=NAME)
    clients.publishes(NOTIFICATION_DELIVERED, CANDIDATE_ERASED)
    clients.needs_indexes(*INDEXES, ERASURE_INDEXES)
    db = clients.db
    notifications = NotificationStore(db[NOTIFICATIONS])
    preferences = PreferenceStore(db[PREFERENCES])
    alerts = AlertStore(db[ALERTS])
    webhooks = WebhookStore(db[WEBHOOKS])
    facts = FactStore(db)
    ledger = ErasureLedger(db[ERASURES])
    ledger_relay = clients.outbox_relay(ledger.collection)
    # Sends the `notification.delivered` events a delivery could not publish as it ended.
    clients.outbox_relay(notifications.collection)

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
        clients.publish,
        source=clients.source,
        schedule=DeliverySchedule(
            max_attempts=settings.delivery_max_attempts,
            initial_backoff_s=settings.delivery_backoff_initial_s,
            max_backoff_s=settings.delivery_backoff_max_s,
        ),
    )

    def unit_of_work() -> NotificationsUnitOfWork:
        return NotificationsUnitOfWork(
            notifications=notifications,
            preferences=preferences,
            alerts=alerts,
            webhooks=webhooks,
            facts=facts,
            erasures=ledger,
            publish=clients.publish,
            deliveries=worker,
            source=clients.source,
        )

    def erasures() -> UnitOfWork[Erasure]:
        return UnitOfWork(ledger, ledger_relay, source=clients.source)

    clients.subscribe(handlers.subscriptions(unit_of_work, erasures))

    @asynccontextmanager
    async def delivery(_: FastAPI) -> AsyncIterator[None]:
        worker.start()
        try:
            yield
        finally:
            await worker.stop()
            await mailer.close()
            await http.aclose()

    return service_app(
        clients,
        [notifications_router(unit_of_work, allow_private_webhooks=settings.webhook_allow_private)],
        description="Tells people and services what happened: inbox, email, webhooks, alerts.",
        background=delivery,
    )

"""Composition root of the notifications service: settings, clients, stores, the delivery
worker, routes and handlers."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import httpx
import structlog
from fastapi import FastAPI
from pydantic import EmailStr, Field, SecretStr, model_validator

from hirestream.notifications import handlers
from hirestream.notifications.api import notifications_router
from hirestream.notifications.delivery import SEND_CONCURRENCY, DeliverySchedule, DeliveryWorker
from hirestream.notifications.domain import UnsubscribeLinks
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
from hirestream.shared.settings import (
    DatabaseName,
    Environment,
    Port,
    ServiceSettings,
    looks_like_placeholder,
)
from hirestream.shared.web.app import service_app

NAME = "notifications"

log = structlog.get_logger(__name__)


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
    # After a rotation the former webhook secret signs deliveries too, for this long.
    webhook_rotation_overlap_s: float = Field(default=24 * 3600, ge=0, le=30 * 24 * 3600)
    # Signs the one-click unsubscribe links of emails. Required outside development, where an
    # unset one is made up per process (links from before a restart are then refused).
    unsubscribe_secret: SecretStr | None = None
    unsubscribe_token_ttl_s: int = Field(default=90 * 24 * 3600, ge=3600)
    # Where `POST /unsubscribe` is reached from the outside (the links in emails start so).
    public_base_url: str = Field(
        default="http://127.0.0.1:8003", pattern=r"^https?://[^/?#\s]+(/[^?#\s]*)?$"
    )
    # The mailto of List-Unsubscribe, for mail apps without one-click: a mailbox someone reads.
    unsubscribe_mailto: EmailStr = "unsubscribe@hirestream.dev"

    @model_validator(mode="after")
    def _unsubscribe_key(self) -> NotificationsSettings:
        development = self.environment is Environment.DEVELOPMENT
        if self.unsubscribe_secret is None:
            if not development:
                raise ValueError("UNSUBSCRIBE_SECRET must be set outside ENVIRONMENT=development")
            return self
        secret = self.unsubscribe_secret.get_secret_value()
        if len(secret) < 32:
            raise ValueError("UNSUBSCRIBE_SECRET must be at least 32 characters")
        if not development and looks_like_placeholder(secret):
            raise ValueError(
                "UNSUBSCRIBE_SECRET looks like a placeholder; outside ENVIRONMENT=development it "
                "must be a random value (e.g. python -c 'import secrets; "
                "print(secrets.token_urlsafe(48))')"
            )
        return self

    def unsubscribe_links(self) -> UnsubscribeLinks:
        if self.unsubscribe_secret is None:
            log.warning("unsubscribe.key_per_process", why="UNSUBSCRIBE_SECRET is not set")
            key = secrets.token_bytes(32)
        else:
            key = self.unsubscribe_secret.get_secret_value().encode()
        return UnsubscribeLinks(
            key=key,
            base_url=self.public_base_url,
            mailto_address=str(self.unsubscribe_mailto),
            lifetime=timedelta(seconds=self.unsubscribe_token_ttl_s),
        )


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
    poster = WebhookSender(http, allow_private=settings.webhook_allow_private)
    unsubscribe_links = settings.unsubscribe_links()
    schedule = DeliverySchedule(
        max_attempts=settings.delivery_max_attempts,
        initial_backoff_s=settings.delivery_backoff_initial_s,
        max_backoff_s=settings.delivery_backoff_max_s,
    )
    worker = DeliveryWorker(
        notifications,
        mailer,
        poster,
        webhooks.by_id,
        clients.publish,
        source=clients.source,
        schedule=schedule,
        unsubscribe=unsubscribe_links,
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
        [
            notifications_router(
                unit_of_work,
                allow_private_webhooks=settings.webhook_allow_private,
                unsubscribe_links=unsubscribe_links,
                webhook_poster=poster,
                secret_overlap=timedelta(seconds=settings.webhook_rotation_overlap_s),
                redelivery_lease=schedule.lease,
            )
        ],
        description="Tells people and services what happened: inbox, email, webhooks, alerts.",
        background=delivery,
    )

"""Delivering email and webhook notifications: the adapters and the worker that drives them.

A notification for email or a webhook is stored first by the event handler, already leased to
this process (due when the lease ends), and handed straight to this worker: no claim is needed
for it, since no other worker takes it before the lease ends. Retries, and deliveries whose
process died, are found when due: the worker polls, claims one with a lease (read the first due,
then compare-and-set its due time), tries the channel, and records every attempt.
Failures are retried with exponential backoff and full jitter up to a bounded number of
attempts; the final outcome (delivered or failed) is written together with its
`notification.delivered` event (the outbox), so an outcome and its event cannot part.

Email and webhooks are at least once: a crash after the send and before the record repeats
the send (webhook receivers deduplicate on the CloudEvent `id`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit

import aiosmtplib
import httpx
import structlog
from jinja2 import Environment, PackageLoader, select_autoescape

from hirestream.notifications.domain import SIGNATURE_HEADER, backoff_s, forbidden_address, sign
from hirestream.notifications.store import NotificationStore
from hirestream.shared.events.envelope import CONTENT_TYPE
from hirestream.shared.events.notifications import (
    NOTIFICATION_DELIVERED,
    Channel,
    DeliveryOutcome,
    NotificationDelivered,
)
from hirestream.shared.events.types import utc_now
from hirestream.shared.messaging.outbox import OutboxRelay
from hirestream.shared.web.metrics import DELIVERIES, DELIVERY_ATTEMPTS

log = structlog.get_logger(__name__)

_templates = Environment(
    loader=PackageLoader("hirestream.notifications", "templates"),
    autoescape=select_autoescape(["html"]),
)


class DeliveryFailed(Exception):
    """This attempt did not deliver; the message says why (no addresses, no content)."""


@dataclass(frozen=True)
class SmtpMailer:
    host: str
    port: int
    sender: str
    username: str | None = None
    password: str | None = None
    start_tls: bool = False
    timeout_s: float = 10.0

    async def send(self, to: str, title: str, body: str) -> None:
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = to
        message["Subject"] = title
        message.set_content(
            _templates.get_template("notification.txt").render(title=title, body=body)
        )
        message.add_alternative(
            _templates.get_template("notification.html").render(title=title, body=body),
            subtype="html",
        )
        try:
            await aiosmtplib.send(
                message,
                hostname=self.host,
                port=self.port,
                username=self.username,
                password=self.password,
                start_tls=self.start_tls,
                timeout=self.timeout_s,
            )
        except (aiosmtplib.SMTPException, OSError) as error:
            raise DeliveryFailed(f"smtp: {type(error).__name__}") from error


class UnsafeWebhookUrl(ValueError):
    """A webhook URL that could reach inside our network, or is not https."""


async def check_webhook_url(url: str, *, allow_private: bool) -> None:
    """Refuse plain http and any host that resolves to a loopback, private, link-local or
    otherwise non-public address (server-side request forgery), unless private targets are
    allowed (local runs and tests). Checked at registration and again before every attempt,
    since DNS answers change."""
    parts = urlsplit(url)
    if parts.scheme not in {"https", "http"} or not parts.hostname:
        raise UnsafeWebhookUrl("the url must be an absolute https url")
    if allow_private:
        return
    if parts.scheme != "https":
        raise UnsafeWebhookUrl("the url must use https")
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            parts.hostname, parts.port or 443, type=socket.SOCK_STREAM
        )
    except OSError as error:
        raise UnsafeWebhookUrl(f"the host {parts.hostname} does not resolve") from error
    if any(forbidden_address(str(info[4][0])) for info in infos):
        raise UnsafeWebhookUrl(f"the host {parts.hostname} resolves to a non-public address")


@dataclass
class WebhookSender:
    client: httpx.AsyncClient
    allow_private: bool

    async def send(self, url: str, secret: str, payload: bytes) -> int:
        try:
            await check_webhook_url(url, allow_private=self.allow_private)
        except UnsafeWebhookUrl as error:
            raise DeliveryFailed(f"webhook url refused: {error}") from error
        headers = {
            "Content-Type": CONTENT_TYPE,
            SIGNATURE_HEADER: sign(secret, int(time.time()), payload),
        }
        try:
            response = await self.client.post(url, content=payload, headers=headers)
        except httpx.HTTPError as error:
            raise DeliveryFailed(f"webhook: {type(error).__name__}") from error
        if not response.is_success:
            raise DeliveryFailed(f"webhook answered {response.status_code}")
        return response.status_code


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    initial_backoff_s: float = 1.0
    max_backoff_s: float = 60.0
    lease: timedelta = timedelta(seconds=60)


# Deliveries handed over from the event handler and waiting for the worker, at most.
HANDOVER_QUEUE_LIMIT = 200

WebhookLookup = Callable[[str], Awaitable[dict[str, Any] | None]]


class DeliveryWorker:
    def __init__(
        self,
        store: NotificationStore,
        relay: OutboxRelay,
        mailer: SmtpMailer,
        webhooks: WebhookSender,
        find_webhook: WebhookLookup,
        *,
        source: str,
        policy: RetryPolicy = RetryPolicy(),
        poll_interval_s: float = 1.0,
    ) -> None:
        self.store = store
        self.relay = relay
        self.mailer = mailer
        self.webhooks = webhooks
        self.find_webhook = find_webhook
        self.source = source
        self.policy = policy
        self.poll_interval_s = poll_interval_s
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._handed: collections.deque[dict[str, Any]] = collections.deque()
        self._poll_now = False

    def due_at_for_new(self) -> tuple[datetime, bool]:
        """The due time to store a new delivery with, and whether to hand it over.

        Leased to this process while its queue has room (it attempts the delivery at once,
        well within the lease); due now otherwise, for the poll to find: the queue stays
        bounded in memory and a lease never runs out while its delivery waits in line."""
        if len(self._handed) < HANDOVER_QUEUE_LIMIT:
            return utc_now() + self.policy.lease, True
        return utc_now(), False

    def hand_over(self, documents: list[dict[str, Any]]) -> None:
        """Deliver these just-stored notifications, leased by `due_at_for_new`, soon."""
        self._handed.extend(documents)
        self._wake.set()

    def wake(self) -> None:
        """New deliveries are due: look now rather than at the next poll."""
        self._poll_now = True
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="delivery-worker")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        next_poll = 0.0
        while True:
            try:
                while self._handed:
                    await self.attempt(self._handed.popleft(), now=utc_now())
                if self._poll_now or time.monotonic() >= next_poll:
                    # Retries, and deliveries a dead process left, are found by a query: run
                    # it every poll interval (or when asked), not after every hand-over.
                    self._poll_now = False
                    next_poll = time.monotonic() + self.poll_interval_s
                    while await self.deliver_next():
                        pass
            except Exception as error:  # database away: try again at the next round
                log.warning("delivery.round_failed", error=type(error).__name__)
            self._wake.clear()
            if self._handed or self._poll_now:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._wake.wait(), timeout=max(0.0, next_poll - time.monotonic())
                )

    async def deliver_next(self) -> bool:
        """Attempt one due delivery; False when none is due."""
        now = utc_now()
        document = await self.store.claim_due(now=now, lease=self.policy.lease)
        if document is None:
            return False
        await self.attempt(document, now=now)
        return True

    async def attempt(self, document: dict[str, Any], *, now: datetime) -> None:
        """One attempt of a delivery this process holds the lease of, and its record."""
        channel = Channel(document["channel"])
        attempt_number = len(document.get("attempts", [])) + 1
        started = time.perf_counter()
        attempt: dict[str, Any] = {"at": now, "number": attempt_number}
        try:
            attempt["status_code"] = await self._send(channel, document)
            outcome: DeliveryOutcome | None = DeliveryOutcome.DELIVERED
        except DeliveryFailed as error:
            attempt["error"] = str(error)
            outcome = DeliveryOutcome.FAILED if attempt_number >= self.policy.max_attempts else None
        attempt["duration_ms"] = round((time.perf_counter() - started) * 1000, 1)
        attempt["ok"] = "error" not in attempt
        DELIVERY_ATTEMPTS.labels(channel.value, str(attempt["ok"]).lower()).inc()
        if outcome is None:
            wait = backoff_s(
                attempt_number,
                initial_s=self.policy.initial_backoff_s,
                max_s=self.policy.max_backoff_s,
                jitter=random.random(),
            )
            await self.store.record_attempt(
                document["_id"],
                attempt,
                retry_at=utc_now() + timedelta(seconds=wait),
                final_status=None,
                events=[],
            )
            log.info("delivery.retry", channel=channel, attempt=attempt_number, in_s=round(wait, 2))
            return
        event = NOTIFICATION_DELIVERED.new(
            NotificationDelivered(
                notification_id=document["_id"],
                channel=channel,
                recipient=document["recipient"],
                kind=document["kind"],
                subject=document["subject"],
                source_event_id=document["source_event_id"],
                outcome=outcome,
                attempts=attempt_number,
                error=attempt.get("error"),
                at=utc_now(),
            ),
            source=self.source,
            correlation_id=document.get("correlation_id"),
        )
        await self.store.record_attempt(
            document["_id"], attempt, retry_at=None, final_status=outcome.value, events=[event]
        )
        self.relay.notify(document["_id"])
        DELIVERIES.labels(channel.value, outcome.value).inc()
        log.info("delivery.final", channel=channel, outcome=outcome, attempts=attempt_number)

    async def _send(self, channel: Channel, document: dict[str, Any]) -> int | None:
        if channel is Channel.EMAIL:
            await self.mailer.send(document["email"], document["title"], document["body"])
            return None
        webhook = await self.find_webhook(document["webhook_id"])
        if webhook is None:
            raise DeliveryFailed("the webhook was deleted")
        return await self.webhooks.send(
            webhook["url"], webhook["secret"], document["payload"].encode()
        )

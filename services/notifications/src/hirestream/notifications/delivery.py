"""Delivering email and webhook notifications: the adapters and the worker that drives them.

A notification for email or a webhook is stored first by the event handler, already leased to
this process (due when the lease ends), and handed straight to this worker: no claim is needed
for it, since no other worker takes it before the lease ends. The worker keeps the first
`HELD_DOCUMENTS_LIMIT` handed deliveries in memory and only the ids of the rest, whose
documents it reads by `_id` when their turn comes (one query per round of
`SEND_CONCURRENCY`); a delivery whose lease is about to end is
leased again by `_id` first (a compare-and-set on the due time it was stored with). So a
backlog costs neither memory nor a query that reads the collection. Retries, and deliveries whose
process died, are found when due: the worker polls, claims a batch with a lease (one read,
then a compare-and-set each), tries them, and records every attempt. A poll that finds
nothing doubles the wait before the next one, up to `max_poll_interval_s`; a retry this
process recorded brings the next poll forward to its due time.

Deliveries are attempted `SEND_CONCURRENCY` at a time, and the outcomes recorded together
leave in one command (group commit). Failures are retried with exponential backoff and full
jitter up to a bounded number of attempts. The final outcome's `notification.delivered` event
(id derived from the notification's) is published before the outcome is recorded, so a
recorded outcome always has its event on the topic; when the broker is away, the event is
written with the outcome (the outbox) and the relay's sweep sends it later.

Email and webhooks are at least once: a crash after the send and before the record repeats
the send (webhook receivers deduplicate on the CloudEvent `id`).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import heapq
import math
import random
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email import base64mime
from email.utils import formataddr, parseaddr
from functools import cached_property
from typing import Any
from urllib.parse import urlsplit

import aiosmtplib
import httpcore
import httpx
import structlog
from jinja2 import Environment, PackageLoader, select_autoescape

from hirestream.notifications.domain import (
    SIGNATURE_HEADER,
    backoff_s,
    delivered_event_id,
    forbidden_address,
    sign,
)
from hirestream.notifications.store import DUE, NotificationStore
from hirestream.shared.events.envelope import CONTENT_TYPE, CloudEvent
from hirestream.shared.events.notifications import (
    NOTIFICATION_DELIVERED,
    Channel,
    DeliveryOutcome,
    NotificationDelivered,
)
from hirestream.shared.events.types import utc_now
from hirestream.shared.web.metrics import DELIVERIES, DELIVERY_ATTEMPTS

SOCKET_OPTION = httpcore.SOCKET_OPTION

log = structlog.get_logger(__name__)

_templates = Environment(
    loader=PackageLoader("hirestream.notifications", "templates"),
    autoescape=select_autoescape(["html"]),
)


class DeliveryFailed(Exception):
    """This attempt did not deliver; the message says why (no addresses, no content)."""


def _encoded_words(value: str) -> str:
    """A header value as RFC 2047 'B' encoded words, one per folded line of at most 78
    characters. Every character is encoded, a line break too: it cannot end the header."""
    words: list[str] = []
    chunk, size = "", 0
    for char in value:
        width = len(char.encode())
        # 39 bytes: 52 characters of base64, 64 with the markers, 73 after "Subject: ".
        if size + width > 39:
            words.append(base64mime.header_encode(chunk, "utf-8"))
            chunk, size = "", 0
        chunk, size = chunk + char, size + width
    words.append(base64mime.header_encode(chunk, "utf-8"))
    return "\r\n ".join(word for word in words if word)


@dataclass(frozen=True)
class SmtpMailer:
    """Sends notification emails, keeping up to `pool_size` SMTP connections open between
    messages: a session costs a connection, a greeting and the login (and a TLS handshake
    with STARTTLS) that a message on an open one does not. A kept connection the server has
    closed meanwhile is noticed at the next send, which then opens a new one."""

    host: str
    port: int
    sender: str
    username: str | None = None
    password: str | None = None
    start_tls: bool = False
    timeout_s: float = 10.0
    pool_size: int = 16
    _idle: list[aiosmtplib.SMTP] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        if "\r" in self.sender or "\n" in self.sender:
            raise ValueError("the sender address has a line break")

    @cached_property
    def _from_header(self) -> str:
        """The From header's value: a non-ASCII display name as RFC 2047 encoded words."""
        return formataddr(parseaddr(self.sender), charset="utf-8")

    @cached_property
    def _envelope_from(self) -> str:
        return parseaddr(self.sender)[1]

    async def send(self, to: str, title: str, body: str) -> None:
        message = self._message(to, title, body)
        envelope_from = self._envelope_from
        # An address beyond ASCII needs the server's SMTPUTF8 extension (RFC 6531).
        options = [] if (to + envelope_from).isascii() else ["SMTPUTF8"]
        kept = self._idle.pop() if self._idle else None
        if kept is not None:
            try:
                await kept.sendmail(envelope_from, [to], message, mail_options=options)
            except (aiosmtplib.SMTPException, OSError):
                kept.close()  # closed by the server while idle, most likely: open a new one
            else:
                self._keep(kept)
                return
        client = aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            username=self.username,
            password=self.password,
            start_tls=self.start_tls,
            timeout=self.timeout_s,
        )
        try:
            await client.connect()  # logs in too when there are credentials
            await client.sendmail(envelope_from, [to], message, mail_options=options)
        except (aiosmtplib.SMTPException, OSError) as error:
            client.close()
            raise DeliveryFailed(f"smtp: {type(error).__name__}") from error
        self._keep(client)

    def _message(self, to: str, title: str, body: str) -> bytes:
        """The message as sent: plain text and HTML alternatives (RFC 2046), each base64.

        Written here rather than by the email package: its classes cost 0.8 ms a message
        (0.25 ms of it encoding the subject, most of the rest in its generator), and while
        the service drained a backlog that was a fifth of its CPU; this costs a tenth of it.
        The structure is fixed and small: headers, two base64 parts, a boundary that base64
        cannot contain. No header line can be smuggled in: the address is checked, and the
        title (user input) is always written as encoded words, where a line break is encoded."""
        if "\r" in to or "\n" in to:
            raise DeliveryFailed("smtp: a line break in the recipient address")
        text = _templates.get_template("notification.txt").render(title=title, body=body)
        html = _templates.get_template("notification.html").render(title=title, body=body)
        boundary = uuid.uuid4().hex  # base64 has no '-': no body line can be a delimiter
        lines = [
            f"From: {self._from_header}",
            f"To: {to}",
            f"Subject: {_encoded_words(' '.join(title.split()))}",  # one line, as displayed
            "MIME-Version: 1.0",
            f'Content-Type: multipart/alternative;\r\n boundary="{boundary}"',
            "",
        ]
        for subtype, content in (("plain", text), ("html", html)):
            lines += [
                f"--{boundary}",
                f'Content-Type: text/{subtype}; charset="utf-8"',
                "Content-Transfer-Encoding: base64",
                "",
                *base64.encodebytes(content.encode()).decode().splitlines(),  # 76 a line
            ]
        lines += [f"--{boundary}--", ""]
        return "\r\n".join(lines).encode()

    def _keep(self, client: aiosmtplib.SMTP) -> None:
        if len(self._idle) < self.pool_size:
            self._idle.append(client)
        else:
            client.close()

    async def close(self) -> None:
        """Say goodbye on the kept connections (at shutdown)."""
        while self._idle:
            client = self._idle.pop()
            with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                await client.quit()
            client.close()


class UnsafeWebhookUrl(ValueError):
    """A webhook URL that could reach inside our network, or is not https."""


Resolver = Callable[[str, int], Awaitable[list[str]]]
"""Resolves a host name (and port) to the addresses a connection may use."""


async def resolve_host(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


async def check_webhook_url(
    url: str, *, allow_private: bool, resolve: Resolver = resolve_host
) -> None:
    """Refuse plain http and any host that resolves to a loopback, private, link-local or
    otherwise non-public address (server-side request forgery), unless private targets are
    allowed (local runs and tests). Checked at registration and before every attempt; the
    connection itself is checked again (`PublicAddressesOnly`), since DNS answers change."""
    parts = urlsplit(url)
    if parts.scheme not in {"https", "http"} or not parts.hostname:
        raise UnsafeWebhookUrl("the url must be an absolute https url")
    if allow_private:
        return
    if parts.scheme != "https":
        raise UnsafeWebhookUrl("the url must use https")
    try:
        addresses = await resolve(parts.hostname, parts.port or 443)
    except OSError as error:
        raise UnsafeWebhookUrl(f"the host {parts.hostname} does not resolve") from error
    if any(forbidden_address(address) for address in addresses):
        raise UnsafeWebhookUrl(f"the host {parts.hostname} resolves to a non-public address")


class PublicAddressesOnly(httpcore.AsyncNetworkBackend):
    """Opens webhook connections to public addresses only: it resolves the host itself, refuses
    if any address is not public, and connects to an address it checked. A check of the URL
    before sending is not enough on its own: a name can answer with a public address to the
    check and a private one to the connection a moment later (DNS rebinding). TLS still
    verifies the certificate against the host name, and pooled connections stay per host name.
    Written here: httpcore's network backend is the documented place for it, and the few
    packages that do this for httpx are young and little used."""

    def __init__(self, resolve: Resolver = resolve_host) -> None:
        self._resolve = resolve
        self._network = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await self._resolve(host, port)
        except OSError as error:
            raise httpcore.ConnectError(f"{host} does not resolve") from error
        if not addresses or any(forbidden_address(address) for address in addresses):
            raise httpcore.ConnectError(f"{host} resolves to a non-public address")
        return await self._network.connect_tcp(
            addresses[0], port, timeout, local_address, socket_options
        )

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("webhooks do not use unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._network.sleep(seconds)


WEBHOOK_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=5)


def webhook_transport(
    *, allow_private: bool, resolve: Resolver = resolve_host
) -> httpx.AsyncHTTPTransport:
    """httpx's transport, connecting through `PublicAddressesOnly` unless private targets are
    allowed. httpx takes no network backend, its connection pool (httpcore) does, so the pool
    (httpx's private `_pool`) is built again with the transport's settings; should a new httpx
    stop using it, tests/unit/test_webhook_egress.py fails."""
    # Not from the environment: a proxy would make the connections this guard checks
    # go to the proxy (where egress must then be guarded instead).
    transport = httpx.AsyncHTTPTransport(trust_env=False, limits=WEBHOOK_LIMITS)
    if not allow_private:
        transport._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=WEBHOOK_LIMITS.max_connections,
            max_keepalive_connections=WEBHOOK_LIMITS.max_keepalive_connections,
            keepalive_expiry=WEBHOOK_LIMITS.keepalive_expiry,
            network_backend=PublicAddressesOnly(resolve),
        )
    return transport


@dataclass
class WebhookSender:
    client: httpx.AsyncClient
    allow_private: bool

    async def send(self, url: str, secret: str, payload: bytes) -> int:
        try:  # refused here with a clear reason; the connection is checked again
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


# Handed-over deliveries whose documents the worker keeps in memory, at most; of the rest it
# keeps the id and the lease (about a hundred bytes each), up to HANDED_LIMIT in all. Beyond
# that, new deliveries are stored due at once, for the poll to find.
HELD_DOCUMENTS_LIMIT = 200
HANDED_LIMIT = 100_000
# Deliveries attempted at once (SMTP connections and webhook requests in flight).
SEND_CONCURRENCY = 16
# A lease with less than this left is renewed before the attempt (longer than a send may take).
LEASE_MARGIN = timedelta(seconds=15)
# Deliveries one poll claims at most.
CLAIM_BATCH = 100

WebhookLookup = Callable[[str], Awaitable[dict[str, Any] | None]]
PublishEvent = Callable[[CloudEvent[Any]], Awaitable[None]]


@dataclass(frozen=True)
class Handed:
    """A delivery handed over by the event handler: stored leased to this process until
    `leased_until`; `document` is None when it was not kept in memory."""

    notification_id: Any
    leased_until: datetime
    document: dict[str, Any] | None


class DeliveryWorker:
    def __init__(
        self,
        store: NotificationStore,
        mailer: SmtpMailer,
        webhooks: WebhookSender,
        find_webhook: WebhookLookup,
        publish: PublishEvent,
        *,
        source: str,
        policy: RetryPolicy = RetryPolicy(),
        poll_interval_s: float = 1.0,
        max_poll_interval_s: float = 15.0,
    ) -> None:
        self.store = store
        self.mailer = mailer
        self.webhooks = webhooks
        self.find_webhook = find_webhook
        self.publish = publish
        self.source = source
        self.policy = policy
        self.poll_interval_s = poll_interval_s
        self.max_poll_interval_s = max_poll_interval_s
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._handed: collections.deque[Handed] = collections.deque()
        self._held_documents = 0
        self._poll_now = False
        self._next_poll_at = 0.0  # monotonic, as the two below
        self._idle_wait_s = poll_interval_s
        self._retries_due: list[float] = []  # heap: when the retries this process recorded fall due

    def due_at_for_new(self) -> tuple[datetime, bool]:
        """The due time to store a new delivery with, and whether to hand it over.

        Leased to this process while its queue has room; due now otherwise, for the poll to
        find (the queue stays bounded in memory)."""
        if len(self._handed) < HANDED_LIMIT:
            return utc_now() + self.policy.lease, True
        return utc_now(), False

    def hand_over(self, documents: list[dict[str, Any]]) -> None:
        """Deliver these just-stored notifications, leased by `due_at_for_new`, soon."""
        for document in documents:
            keep = self._held_documents < HELD_DOCUMENTS_LIMIT
            self._held_documents += keep
            self._handed.append(Handed(document["_id"], document[DUE], document if keep else None))
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
        while True:
            try:
                while self._handed:
                    await self._attempt_handed()
                if self._poll_now or time.monotonic() >= self._poll_at():
                    self._poll_now = False
                    while self._retries_due and self._retries_due[0] <= time.monotonic():
                        heapq.heappop(self._retries_due)  # this poll finds it
                    found = await self.deliver_due()
                    # Retries, and deliveries a dead process left, are found by a query: run
                    # it less often while it finds nothing.
                    self._idle_wait_s = (
                        self.poll_interval_s
                        if found
                        else min(self._idle_wait_s * 2, self.max_poll_interval_s)
                    )
                    self._next_poll_at = time.monotonic() + self._idle_wait_s
            except Exception as error:  # database away: try again at the next round
                log.warning("delivery.round_failed", error=type(error).__name__)
                self._next_poll_at = time.monotonic() + self.poll_interval_s
            self._wake.clear()
            if self._handed or self._poll_now:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._wake.wait(), timeout=max(0.0, self._poll_at() - time.monotonic())
                )

    def _poll_at(self) -> float:
        """When to poll next: the idle interval, or the next retry this process recorded."""
        return min(self._next_poll_at, self._retries_due[0] if self._retries_due else math.inf)

    async def _attempt_handed(self) -> None:
        """Attempt the next handed-over deliveries, SEND_CONCURRENCY at once."""
        now = utc_now()
        round_ = [self._handed.popleft() for _ in range(min(SEND_CONCURRENCY, len(self._handed)))]
        self._held_documents -= sum(handed.document is not None for handed in round_)
        # Still ours while the lease lasts: nobody claims a delivery before its due time.
        # Only the content of those handed over as ids is missing, and one read by `_id`
        # brings the round's (a read does not queue behind writes).
        ours: list[Handed] = []
        expiring: list[Handed] = []
        for handed in round_:
            (ours if handed.leased_until - now > LEASE_MARGIN else expiring).append(handed)
        missing = [handed.notification_id for handed in ours if handed.document is None]
        read = await self.store.get_many(missing) if missing else {}
        documents = [
            handed.document if handed.document is not None else read.get(handed.notification_id)
            for handed in ours
        ]
        # A lease nearly over is taken again, unless another worker took it meanwhile.
        documents += await asyncio.gather(
            *(
                self.store.claim(
                    handed.notification_id,
                    due_at=handed.leased_until,
                    until=now + self.policy.lease,
                )
                for handed in expiring
            )
        )
        await self._attempt_all([document for document in documents if document], now)

    async def deliver_due(self) -> int:
        """Attempt the deliveries that are due, a batch at a time; how many were claimed."""
        claimed = 0
        while True:
            now = utc_now()
            batch = await self.store.claim_due(now=now, lease=self.policy.lease, limit=CLAIM_BATCH)
            claimed += len(batch)
            for start in range(0, len(batch), SEND_CONCURRENCY):
                await self._attempt_all(batch[start : start + SEND_CONCURRENCY], now)
            if len(batch) < CLAIM_BATCH:
                return claimed

    async def _attempt_all(self, documents: list[dict[str, Any]], now: datetime) -> None:
        outcomes = await asyncio.gather(
            *(self.attempt(document, now=now) for document in documents), return_exceptions=True
        )
        for outcome in outcomes:
            if isinstance(outcome, Exception):  # not recorded: tried again when its lease ends
                log.warning("delivery.record_failed", error=type(outcome).__name__)

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
            heapq.heappush(self._retries_due, time.monotonic() + wait)  # poll then, if not before
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
            event_id=delivered_event_id(document["_id"]),
        )
        # Published before the outcome is recorded, so the record needs no outbox: a crash in
        # between leaves the lease to run out, and the next attempt sends again and publishes
        # an event with the same id (at least once, as the send itself). Only when the broker
        # is away does the event go into the outbox with the outcome, for the sweep to send.
        try:
            await self.publish(event)
            owed = []
        except Exception as error:
            log.warning("delivery.announce_deferred", error=type(error).__name__)
            owed = [event]
        await self.store.record_attempt(
            document["_id"], attempt, retry_at=None, final_status=outcome.value, events=owed
        )
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

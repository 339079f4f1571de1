"""The delivery worker: attempts email and webhook notifications, retries them, records every
attempt, and announces each final outcome.

A notification for email or a webhook is stored first by the use case that made it, already
leased to this process (due when the lease ends), and handed straight to this worker: no claim
is needed, since no other worker takes it before the lease ends. The worker keeps the first
`HELD_LIMIT` handed notifications in memory and only the ids of the rest, whose notifications
it reads by id when their turn comes (one query per round of `SEND_CONCURRENCY`); one whose
lease is about to end is leased again first (a compare-and-set on the due time it was stored
with). So a backlog costs neither memory nor a query over the collection. Retries, and
deliveries whose process died, are found when due: the worker polls, claims a batch with a
lease, tries them, and records every attempt. A poll that finds nothing doubles the wait before
the next one, up to `max_poll_interval_s`; a retry this process recorded brings the next poll
forward to its due time.

Deliveries are attempted `SEND_CONCURRENCY` at a time; the attempts recorded together leave in
one command (group commit). Failures are retried with exponential backoff and full jitter, up to
a bounded number of attempts. The final outcome's `notification.delivered` is published before
the outcome is recorded, so a recorded outcome always has its event on the topic; when the
broker is away the event is written with the outcome (the outbox) and the relay sends it later.
Email and webhooks are at least once: a crash after the send and before the record repeats the
send (webhook receivers deduplicate on the CloudEvent `id`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import heapq
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import structlog
from opentelemetry.trace import SpanKind

from hirestream.notifications.domain import (
    DeliveryAttempt,
    DeliveryFailed,
    DeliveryImpossible,
    DeliveryStatus,
    ListUnsubscribe,
    Notification,
    UnsubscribeLinks,
    UnsubscribeScope,
    Webhook,
    backoff_s,
)
from hirestream.notifications.services import DeliveryRecords, WebhookPoster
from hirestream.shared.events.envelope import CloudEvent
from hirestream.shared.events.notifications import Channel, DeliveryOutcome
from hirestream.shared.events.types import utc_now
from hirestream.shared.metrics import DELIVERIES, DELIVERY_ATTEMPTS
from hirestream.shared.tracing import continued

log = structlog.get_logger(__name__)


class Mailer(Protocol):
    async def send(
        self, to: str, title: str, body: str, unsubscribe: ListUnsubscribe | None = None
    ) -> None: ...


class DeliveryQueue(DeliveryRecords, Protocol):
    """What the worker needs of the notification store: the records, and claims on them."""

    async def claim(
        self, notification_id: str, *, due_at: datetime, until: datetime
    ) -> Notification | None: ...

    async def claim_due(
        self, *, now: datetime, lease: timedelta, limit: int
    ) -> list[Notification]: ...


WebhookLookup = Callable[[str], Awaitable[Webhook | None]]
PublishEvent = Callable[[CloudEvent[Any]], Awaitable[None]]


@dataclass(frozen=True)
class DeliverySchedule:
    """How often and how far apart a delivery is attempted, and how long a lease holds."""

    max_attempts: int = 5
    initial_backoff_s: float = 1.0
    max_backoff_s: float = 60.0
    lease: timedelta = timedelta(seconds=60)


# Handed-over notifications the worker keeps in memory, at most; of the rest it keeps the id
# and the lease (about a hundred bytes each), up to HANDED_LIMIT in all. Beyond that, new
# deliveries are stored due at once, for the poll to find.
HELD_LIMIT = 200
HANDED_LIMIT = 100_000
# Deliveries attempted at once (SMTP connections and webhook requests in flight).
SEND_CONCURRENCY = 16
# A lease with less than this left is renewed before the attempt (longer than a send may take).
LEASE_MARGIN = timedelta(seconds=15)
# Deliveries one poll claims at most.
CLAIM_BATCH = 100


@dataclass(frozen=True)
class Handed:
    """A delivery handed over by the use case that stored it, leased to this process until
    `leased_until`; `notification` is None when it was not kept in memory."""

    notification_id: str
    leased_until: datetime
    notification: Notification | None


class DeliveryWorker:
    def __init__(
        self,
        queue: DeliveryQueue,
        mailer: Mailer,
        webhooks: WebhookPoster,
        find_webhook: WebhookLookup,
        publish: PublishEvent,
        *,
        source: str,
        schedule: DeliverySchedule | None = None,
        unsubscribe: UnsubscribeLinks | None = None,
        poll_interval_s: float = 1.0,
        max_poll_interval_s: float = 15.0,
    ) -> None:
        self.queue = queue
        self.unsubscribe = unsubscribe  # the links every email carries (none in some tests)
        self.mailer = mailer
        self.webhooks = webhooks
        self.find_webhook = find_webhook
        self.publish = publish
        self.source = source
        self.schedule = schedule or DeliverySchedule()
        self.poll_interval_s = poll_interval_s
        self.max_poll_interval_s = max_poll_interval_s
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._handed: collections.deque[Handed] = collections.deque()
        self._held = 0
        self._poll_now = False
        self._next_poll_at = 0.0  # monotonic, as the two below
        self._idle_wait_s = poll_interval_s
        self._retries_due: list[float] = []  # heap: when the retries this process recorded fall due

    def due_at_for_new(self) -> tuple[datetime, bool]:
        """The due time to store a new delivery with, and whether to hand it over: leased to
        this process while its queue has room, due now otherwise (the poll finds it)."""
        if len(self._handed) < HANDED_LIMIT:
            return utc_now() + self.schedule.lease, True
        return utc_now(), False

    def hand_over(self, notifications: list[Notification]) -> None:
        """Deliver these just-stored notifications, leased by `due_at_for_new`, soon."""
        for notification in notifications:
            keep = self._held < HELD_LIMIT
            self._held += keep
            assert notification.delivery_due_at is not None  # pending deliveries have one
            self._handed.append(
                Handed(
                    notification.notification_id,
                    notification.delivery_due_at,
                    notification if keep else None,
                )
            )
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
        self._held -= sum(handed.notification is not None for handed in round_)
        # Still ours while the lease lasts: nobody claims a delivery before its due time. Of
        # those handed over as ids, one read by id brings the round's.
        ours = [handed for handed in round_ if handed.leased_until - now > LEASE_MARGIN]
        expiring = [handed for handed in round_ if handed.leased_until - now <= LEASE_MARGIN]
        missing = [handed.notification_id for handed in ours if handed.notification is None]
        read = await self.queue.get_many(missing) if missing else {}
        notifications = [handed.notification or read.get(handed.notification_id) for handed in ours]
        # A lease nearly over is taken again, unless another worker took it meanwhile.
        notifications += await asyncio.gather(
            *(
                self.queue.claim(
                    handed.notification_id,
                    due_at=handed.leased_until,
                    until=now + self.schedule.lease,
                )
                for handed in expiring
            )
        )
        await self._attempt_all([n for n in notifications if n is not None], now)

    async def deliver_due(self) -> int:
        """Attempt the deliveries that are due, a batch at a time; how many were claimed."""
        claimed = 0
        while True:
            now = utc_now()
            batch = await self.queue.claim_due(
                now=now, lease=self.schedule.lease, limit=CLAIM_BATCH
            )
            claimed += len(batch)
            for start in range(0, len(batch), SEND_CONCURRENCY):
                await self._attempt_all(batch[start : start + SEND_CONCURRENCY], now)
            if len(batch) < CLAIM_BATCH:
                return claimed

    async def _attempt_all(self, notifications: list[Notification], now: datetime) -> None:
        outcomes = await asyncio.gather(
            *(self.attempt(notification, now=now) for notification in notifications),
            return_exceptions=True,
        )
        for outcome in outcomes:
            if isinstance(outcome, Exception):  # not recorded: tried again when its lease ends
                log.warning("delivery.record_failed", error=type(outcome).__name__)

    async def attempt(self, notification: Notification, *, now: datetime) -> None:
        """One attempt of a delivery this process holds the lease of, and its record (a span
        in the trace of the event that made the notification)."""
        trace_context = notification.trace_context or {}
        with continued(f"deliver {notification.channel.value}", trace_context, SpanKind.CLIENT):
            await self._attempt(notification, now=now)

    async def _attempt(self, notification: Notification, *, now: datetime) -> None:
        channel = notification.channel
        number = len(notification.attempts) + 1
        started = time.perf_counter()
        status_code: int | None = None
        error: str | None = None
        final = False
        try:
            status_code = await self._send(notification)
        except DeliveryFailed as failure:
            error, status_code = str(failure), failure.status_code
            final = isinstance(failure, DeliveryImpossible)
        attempt = DeliveryAttempt(
            number=number,
            at=now,
            ok=error is None,
            status_code=status_code,
            error=error,
            duration_ms=round((time.perf_counter() - started) * 1000, 1),
        )
        DELIVERY_ATTEMPTS.labels(channel.value, str(attempt.ok).lower()).inc()
        if error is not None and not final and number < self.schedule.max_attempts:
            await self._retry_later(notification, attempt)
            return
        outcome = DeliveryOutcome.DELIVERED if error is None else DeliveryOutcome.FAILED
        event = notification.delivered_event(
            outcome, attempts=number, at=utc_now(), source=self.source, error=error
        )
        # Published before the outcome is recorded, so the record needs no outbox: a crash in
        # between leaves the lease to run out, and the next attempt sends again and publishes
        # an event with the same id. Only when the broker is away does the event go into the
        # outbox with the outcome, for the relay to send.
        try:
            await self.publish(event)
            owed = []
        except Exception as failure:
            log.warning("delivery.announce_deferred", error=type(failure).__name__)
            owed = [event]
        await self.queue.record_attempt(
            notification.notification_id,
            attempt,
            retry_at=None,
            final_status=DeliveryStatus(outcome.value),
            owed=owed,
        )
        DELIVERIES.labels(channel.value, outcome.value).inc()
        log.info("delivery.final", channel=channel, outcome=outcome, attempts=number)

    async def _retry_later(self, notification: Notification, attempt: DeliveryAttempt) -> None:
        wait = backoff_s(
            attempt.number,
            initial_s=self.schedule.initial_backoff_s,
            max_s=self.schedule.max_backoff_s,
            jitter=random.random(),
        )
        await self.queue.record_attempt(
            notification.notification_id,
            attempt,
            retry_at=utc_now() + timedelta(seconds=wait),
            final_status=None,
            owed=[],
        )
        heapq.heappush(self._retries_due, time.monotonic() + wait)  # poll then, if not before
        log.info(
            "delivery.retry",
            channel=notification.channel,
            attempt=attempt.number,
            in_s=round(wait, 2),
        )

    async def _send(self, notification: Notification) -> int | None:
        if notification.channel is Channel.EMAIL:
            if notification.email is None:
                raise DeliveryImpossible("no address to send to (erased)")
            scope = UnsubscribeScope(notification.recipient, notification.kind)
            links = self.unsubscribe.links(scope, now=utc_now()) if self.unsubscribe else None
            await self.mailer.send(
                notification.email, notification.title or "", notification.body or "", links
            )
            return None
        webhook = await self.find_webhook(notification.webhook_id or "")
        if webhook is None:
            raise DeliveryImpossible("the webhook was deleted")
        return await self.webhooks.send(
            webhook.url, webhook.signing_secrets(utc_now()), (notification.payload or "").encode()
        )

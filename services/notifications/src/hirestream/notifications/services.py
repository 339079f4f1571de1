"""The notifications use cases: who is told what when an event arrives, and what people do with
their inbox, preferences, job alerts and webhooks.

Each event's use case asks the domain for the plan, makes every planned notification under its
deterministic id (event, recipient, channel), and commits them in one write: a redelivered
event finds them all stored and changes nothing. Committing also announces the in-app ones
(their `notification.delivered`, derived from the stored notification, so a copy is identical)
and hands the email and webhook ones to the delivery worker. The consumer commits the record's
offset after the use case returns, so the effect is exactly once; the announcements need no
outbox because the source event is the durable note that they are owed (ADR 0005).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import structlog

from hirestream.notifications.domain import (
    WEBHOOK_PING,
    Alert,
    AlertCriteria,
    AnnouncedPosting,
    ApplicationFacts,
    DeliveryAttempt,
    DeliveryFailed,
    DeliveryStatus,
    InvalidUnsubscribeToken,
    Notification,
    PlannedNotification,
    Preferences,
    RetiringSecret,
    UnsubscribeLinks,
    UnsubscribeScope,
    Webhook,
    WebhookPing,
    WebhookRegistration,
    inbox_of,
    notification_id,
    org_recipient,
    plan_application_submitted,
    plan_posting_created,
    plan_posting_expired,
    plan_status_changed,
    user_recipient,
    webhook_owner,
)
from hirestream.notifications.webhooks import UnsafeWebhookUrl, check_webhook_url
from hirestream.shared.events.applications import (
    ApplicationStatusChanged,
    ApplicationSubmitted,
)
from hirestream.shared.events.envelope import CloudEvent, serialize
from hirestream.shared.events.notifications import Channel, DeliveryOutcome
from hirestream.shared.events.postings import CloseReason, PostingClosed, PostingCreated
from hirestream.shared.events.types import utc_now
from hirestream.shared.identity import Principal, Role, same_address
from hirestream.shared.metrics import DELIVERY_ATTEMPTS
from hirestream.shared.privacy import ERASED_EMAIL, ERASED_NAME
from hirestream.shared.service_layer.errors import Conflict, InvalidRequest, NotFound
from hirestream.shared.storage.pagination import Page
from hirestream.shared.tracing import current_trace_context

log = structlog.get_logger(__name__)

# At most ~2 s held on one status change (its partition waits meanwhile).
FACTS_PATIENCE_ROUNDS = 8
FACTS_PATIENCE_STEP_S = 0.25


class DeliveryRecords(Protocol):
    """The stored notifications as deliveries read and record them."""

    async def get_many(self, notification_ids: list[str]) -> dict[str, Notification]: ...

    async def record_attempt(
        self,
        notification_id: str,
        attempt: DeliveryAttempt,
        *,
        retry_at: datetime | None,
        final_status: DeliveryStatus | None,
        owed: list[CloudEvent[Any]],
    ) -> None: ...


class Notifications(DeliveryRecords, Protocol):
    async def create(
        self, notifications: Sequence[Notification]
    ) -> tuple[list[Notification], list[str]]: ...

    async def inbox(
        self, recipient: str, *, limit: int, cursor: str | None, unread_only: bool = False
    ) -> Page[Notification]: ...

    async def unread_count(self, recipient: str) -> int: ...

    async def mark_all_read(self, recipient: str) -> int: ...

    async def take_for_redelivery(
        self, notification_id: str, webhook_id: str, *, until: datetime
    ) -> Notification | None: ...

    async def deliveries(
        self, webhook_id: str, *, limit: int, cursor: str | None
    ) -> Page[Notification]: ...

    async def mark_read(self, recipient: str, notification_id: str) -> Notification | None: ...

    async def anonymise_candidate(self, candidate_id: str, application_ids: list[str]) -> int: ...


class PreferenceChoices(Protocol):
    async def get(self, recipient: str) -> Preferences: ...

    async def get_many(self, recipients: Sequence[str]) -> dict[str, Preferences]: ...

    async def put(self, recipient: str, preferences: Preferences) -> None: ...


class Alerts(Protocol):
    async def create(self, candidate_id: str, criteria: AlertCriteria) -> Alert: ...

    async def of_candidate(
        self, candidate_id: str, *, limit: int, cursor: str | None
    ) -> Page[Alert]: ...

    async def delete(self, candidate_id: str, alert_id: str) -> bool: ...

    async def delete_of_candidate(self, candidate_id: str) -> int: ...

    async def matching(self, posting: PostingCreated) -> list[Alert]: ...


class Webhooks(Protocol):
    async def create(
        self, owner: str, org: str | None, registration: WebhookRegistration
    ) -> Webhook: ...

    async def of_owner(self, owner: str, *, limit: int, cursor: str | None) -> Page[Webhook]: ...

    async def get(self, owner: str, webhook_id: str) -> Webhook | None: ...

    async def delete(self, owner: str, webhook_id: str) -> bool: ...

    async def replace_secret(
        self,
        owner: str,
        webhook_id: str,
        *,
        expected: str,
        secret: str,
        retiring: list[RetiringSecret],
    ) -> Webhook | None: ...

    async def subscribed(self, kind: str, orgs: set[str]) -> list[Webhook]: ...


class WebhookPoster(Protocol):
    """Sends one signed POST to a webhook; its status code, or DeliveryFailed."""

    async def send(self, url: str, secrets: Sequence[str], payload: bytes) -> int: ...


class Facts(Protocol):
    async def remember_posting(self, event_id: str, posting: PostingCreated) -> bool: ...

    async def postings_by_id(self, posting_ids: set[str]) -> dict[str, AnnouncedPosting]: ...

    async def remember_applications(self, facts: list[ApplicationFacts]) -> None: ...

    async def anonymise_candidate(self, candidate_id: str) -> list[str]: ...

    async def application(self, application_id: str) -> ApplicationFacts | None: ...


class Deliveries(Protocol):
    """The delivery worker, as the use cases hand it new deliveries."""

    def due_at_for_new(self) -> tuple[datetime, bool]: ...

    def hand_over(self, notifications: list[Notification]) -> None: ...

    def wake(self) -> None: ...


class ErasureRegister(Protocol):
    async def erased_among(self, candidate_ids: Iterable[str]) -> set[str]: ...


Publish = Callable[[CloudEvent[Any]], Awaitable[None]]


class NotificationsUnitOfWork:
    """The stores the use cases read and write, and what `commit` does with new notifications:
    store them in one write, announce the in-app ones, hand the others to the worker."""

    def __init__(
        self,
        *,
        notifications: Notifications,
        preferences: PreferenceChoices,
        alerts: Alerts,
        webhooks: Webhooks,
        facts: Facts,
        erasures: ErasureRegister,
        publish: Publish,
        deliveries: Deliveries,
        source: str,
    ) -> None:
        self.notifications = notifications
        self.preferences = preferences
        self.alerts = alerts
        self.webhooks = webhooks
        self.facts = facts
        self.erasures = erasures
        self.publish = publish
        self.deliveries = deliveries
        self.source = source
        self._pending: list[Notification] = []
        self._hand_over = True

    def delivery_due_at(self) -> datetime:
        """When new email and webhook notifications fall due: leased to this process's worker
        while its queue has room, at once otherwise (for the worker's poll to find)."""
        due_at, self._hand_over = self.deliveries.due_at_for_new()
        return due_at

    def add(self, notifications: Iterable[Notification]) -> None:
        self._pending.extend(notifications)

    async def commit(self) -> int:
        """Store the pending notifications once each; returns how many were new."""
        pending, self._pending = self._pending, []
        made, existing = await self.notifications.create(pending)
        await self._announce(n for n in made if n.in_app)
        if existing:  # a redelivered event: announce again what a crash may have cut short
            stored = await self.notifications.get_many(existing)
            await self._announce(n for n in stored.values() if n.in_app)
        deliveries = [n for n in made if not n.in_app]
        if self._hand_over:
            self.deliveries.hand_over(deliveries)
        elif deliveries:
            self.deliveries.wake()
        return len(made)

    async def _announce(self, in_app: Iterable[Notification]) -> None:
        events = [
            notification.delivered_event(
                DeliveryOutcome.DELIVERED,
                attempts=1,
                at=notification.created_at,
                source=self.source,
            )
            for notification in in_app
        ]
        # Concurrently: the producer batches them into a few requests to the broker.
        await asyncio.gather(*(self.publish(event) for event in events))


UnitOfWorkFactory = Callable[[], NotificationsUnitOfWork]


# ---------------------------------------------------------------------- who is told what


@dataclass(frozen=True)
class _Occasion:
    """One event and the notifications it calls for, before the webhooks are added."""

    event: CloudEvent[Any]
    plan: Sequence[PlannedNotification]
    org: str


async def notify_posting_created(
    event: CloudEvent[PostingCreated], uow: NotificationsUnitOfWork
) -> None:
    """Every candidate whose alert matches, once."""
    posting = event.data
    await uow.facts.remember_posting(event.id, posting)
    alerts = await uow.alerts.matching(posting)
    candidates = {alert.candidate_id for alert in alerts}
    preferences = await uow.preferences.get_many([user_recipient(c) for c in sorted(candidates)])
    plan = plan_posting_created(posting, [(a.candidate_id, a.email) for a in alerts], preferences)
    await _notify(event.type, [_Occasion(event, plan, posting.org)], uow)
    await _anonymise_erased_meanwhile(candidates, uow)


async def notify_applications_submitted(
    events: Sequence[CloudEvent[ApplicationSubmitted]], uow: NotificationsUnitOfWork
) -> None:
    """The candidate gets a confirmation, the employer learns of a new applicant. A batch
    costs the same few queries whatever its size, and the reads go out together."""
    candidates = {event.data.candidate.candidate_id for event in events}
    recipients = {user_recipient(c) for c in candidates} | {
        org_recipient(event.data.org) for event in events
    }
    erased, postings, preferences = await asyncio.gather(
        uow.erasures.erased_among(candidates),
        uow.facts.postings_by_id({event.data.posting_id for event in events}),
        uow.preferences.get_many(sorted(recipients)),
    )
    # A replay of an event from before an erasure must not bring the person back.
    events = [_without_person(e) if e.data.candidate.candidate_id in erased else e for e in events]
    facts = [_application_facts(event.data, postings) for event in events]
    await uow.facts.remember_applications(facts)
    occasions = [
        _Occasion(
            event,
            plan_application_submitted(
                event.data, known.posting_title, known.contact_email, preferences
            ),
            event.data.org,
        )
        for event, known in zip(events, facts, strict=True)
    ]
    if occasions:
        await _notify(occasions[0].event.type, occasions, uow, preferences)
    await _anonymise_erased_meanwhile(candidates - erased, uow)


async def notify_status_changed(
    event: CloudEvent[ApplicationStatusChanged], uow: NotificationsUnitOfWork
) -> None:
    """The candidate hears of every move; the employer when the candidate withdraws."""
    change = event.data
    facts = await _application_facts_waiting(change.application_id, uow)
    recipients = [user_recipient(change.candidate_id), org_recipient(change.org)]
    plan = plan_status_changed(change, facts, await uow.preferences.get_many(recipients))
    await _notify(event.type, [_Occasion(event, plan, change.org)], uow)


async def notify_posting_closed(
    event: CloudEvent[PostingClosed], uow: NotificationsUnitOfWork
) -> None:
    """The employer org is told when its posting expired; other closes tell nobody."""
    closed = event.data
    if closed.reason is not CloseReason.EXPIRED:
        log.info("notifications.close_not_told", reason=closed.reason.value)
        return
    employer = org_recipient(closed.org)
    remembered, preferences = await asyncio.gather(
        uow.facts.postings_by_id({closed.posting_id}), uow.preferences.get_many([employer])
    )
    known = remembered.get(closed.posting_id)
    plan = plan_posting_expired(closed, known.title if known else None, preferences)
    await _notify(event.type, [_Occasion(event, plan, closed.org)], uow, preferences)


async def _notify(
    kind: str,
    occasions: list[_Occasion],
    uow: NotificationsUnitOfWork,
    preferences: Mapping[str, Preferences] | None = None,
) -> None:
    """Make every notification of these events, the orgs' webhooks included, and commit them.
    `preferences`: those already read, the orgs' among them."""
    due_at = uow.delivery_due_at()
    orgs = {occasion.org for occasion in occasions}
    org_preferences: Mapping[str, Preferences]
    if preferences is None:
        org_preferences, webhooks = await asyncio.gather(
            uow.preferences.get_many(sorted(map(org_recipient, orgs))),
            uow.webhooks.subscribed(kind, orgs),
        )
    else:
        org_preferences = preferences
        webhooks = await uow.webhooks.subscribed(kind, orgs)
    made: list[Notification] = []
    for occasion in occasions:
        made += [_planned(occasion.event, one, due_at) for one in occasion.plan]
        wanted = org_preferences.get(org_recipient(occasion.org), Preferences())
        made += [
            _webhook_delivery(occasion.event, webhook, due_at)
            for webhook in webhooks
            # An org's webhooks follow its preferences; an admin's (org None) always deliver.
            if webhook.org is None
            or (webhook.org == occasion.org and wanted.wants(kind, Channel.WEBHOOK))
        ]
    uow.add(made)
    new = await uow.commit()
    log.info("notifications.made", kind=kind, events=len(occasions), planned=len(made), new=new)


def _planned(
    event: CloudEvent[Any], planned: PlannedNotification, due_at: datetime
) -> Notification:
    common = _common(event, planned.recipient, planned.channel)
    if planned.channel is Channel.IN_APP:
        return Notification(
            **common, title=planned.title, body=planned.body, status=DeliveryStatus.DELIVERED
        )
    return Notification(
        **common,
        title=planned.title,
        body=planned.body,
        email=planned.email,
        status=DeliveryStatus.PENDING,
        delivery_due_at=due_at,
    )


def _webhook_delivery(event: CloudEvent[Any], webhook: Webhook, due_at: datetime) -> Notification:
    return Notification(
        **_common(event, f"webhook:{webhook.webhook_id}", Channel.WEBHOOK),
        webhook_id=webhook.webhook_id,
        payload=serialize(event).decode(),
        status=DeliveryStatus.PENDING,
        delivery_due_at=due_at,
    )


def _common(event: CloudEvent[Any], recipient: str, channel: Channel) -> dict[str, Any]:
    return {
        "notification_id": notification_id(event.id, recipient, channel),
        "recipient": recipient,
        "channel": channel,
        "kind": event.type,
        "subject": event.subject,
        "source_event_id": event.id,
        "correlation_id": event.correlationid,
        "trace_context": current_trace_context() or None,
        "created_at": utc_now(),
    }


async def _application_facts_waiting(
    application_id: str, uow: NotificationsUnitOfWork
) -> ApplicationFacts | None:
    """The facts of an application, waiting briefly for them: `application.submitted` and a
    quick first status change travel on different topics and may be handled in either order.
    Without them the candidate is still told in-app, not by email."""
    for _ in range(FACTS_PATIENCE_ROUNDS):
        facts = await uow.facts.application(application_id)
        if facts is not None:
            return facts
        await asyncio.sleep(FACTS_PATIENCE_STEP_S)
    log.warning("notifications.facts_missing", application_id=application_id)
    return None


def _without_person(
    event: CloudEvent[ApplicationSubmitted],
) -> CloudEvent[ApplicationSubmitted]:
    application = event.data
    erased = application.candidate.model_copy(update={"name": ERASED_NAME, "email": ERASED_EMAIL})
    # The same fields the erasure blanks in stored webhook payloads (store.anonymised_payload).
    without = {"candidate": erased, "resume_url": "", "cover_letter": None}
    return event.model_copy(update={"data": application.model_copy(update=without)})


def _application_facts(
    application: ApplicationSubmitted, postings: Mapping[str, AnnouncedPosting]
) -> ApplicationFacts:
    posting = postings.get(application.posting_id)
    return ApplicationFacts(
        application_id=application.application_id,
        candidate_id=application.candidate.candidate_id,
        candidate_name=application.candidate.name,
        candidate_email=application.candidate.email,
        posting_id=application.posting_id,
        posting_title=posting.title if posting else None,
        org=application.org,
        contact_email=posting.contact_email if posting else None,
    )


# -------------------------------------------------------------------------------- erasure


async def anonymise_candidate(candidate_id: str, uow: NotificationsUnitOfWork) -> dict[str, int]:
    application_ids = await uow.facts.anonymise_candidate(candidate_id)
    return {
        "applications_seen": len(application_ids),
        "notifications": await uow.notifications.anonymise_candidate(candidate_id, application_ids),
        "alerts": await uow.alerts.delete_of_candidate(candidate_id),
    }


async def _anonymise_erased_meanwhile(
    candidate_ids: set[str], uow: NotificationsUnitOfWork
) -> None:
    """Anonymise what was just written of candidates whose erasure was recorded while it was
    being written: the erasure found none of it (see shared.privacy)."""
    if candidate_ids:
        for candidate_id in await uow.erasures.erased_among(candidate_ids):
            await anonymise_candidate(candidate_id, uow)


# ------------------------------------------------------------------ inbox and preferences


async def inbox(
    caller: Principal,
    uow: NotificationsUnitOfWork,
    *,
    limit: int,
    cursor: str | None,
    unread_only: bool = False,
) -> Page[Notification]:
    return await uow.notifications.inbox(
        inbox_of(caller), limit=limit, cursor=cursor, unread_only=unread_only
    )


async def unread_count(caller: Principal, uow: NotificationsUnitOfWork) -> int:
    return await uow.notifications.unread_count(inbox_of(caller))


async def mark_all_read(caller: Principal, uow: NotificationsUnitOfWork) -> int:
    """Every unread item of the caller's inbox marked read; how many changed."""
    return await uow.notifications.mark_all_read(inbox_of(caller))


async def mark_read(
    caller: Principal, notification_id: str, uow: NotificationsUnitOfWork
) -> Notification:
    marked = await uow.notifications.mark_read(inbox_of(caller), notification_id)
    if marked is None:
        raise NotFound(f"notification {notification_id} is not in your inbox")
    return marked


async def preferences_of(caller: Principal, uow: NotificationsUnitOfWork) -> Preferences:
    return await uow.preferences.get(inbox_of(caller))


async def choose_preferences(
    caller: Principal, chosen: Preferences, uow: NotificationsUnitOfWork
) -> Preferences:
    await uow.preferences.put(inbox_of(caller), chosen)
    return chosen


async def unsubscribe(
    token: str, uow: NotificationsUnitOfWork, *, links: UnsubscribeLinks
) -> UnsubscribeScope:
    """One-click unsubscribe: the token alone says whose email of which kind to turn off (no
    login: mail apps send it). The other channels of the kind stay as they were. Doing it
    twice changes nothing more."""
    try:
        scope = links.read(token, now=utc_now())
    except InvalidUnsubscribeToken as error:
        raise InvalidRequest(str(error), field="token") from error
    chosen = await uow.preferences.get(scope.recipient)
    if Channel.EMAIL in chosen.effective()[scope.kind]:
        await uow.preferences.put(scope.recipient, chosen.without(scope.kind, Channel.EMAIL))
    log.info("notifications.unsubscribed", kind=scope.kind)
    return scope


# ----------------------------------------------------------------------------- job alerts


async def save_alert(
    caller: Principal, criteria: AlertCriteria, uow: NotificationsUnitOfWork
) -> Alert:
    """An alert mails only the address the candidate's token vouches for."""
    if criteria.email is not None and not same_address(criteria.email, caller.email):
        raise InvalidRequest(
            "alerts are emailed only to the verified email of your token", field="email"
        )
    return await uow.alerts.create(caller.user_id, criteria)


async def alerts_of(
    caller: Principal, uow: NotificationsUnitOfWork, *, limit: int, cursor: str | None
) -> Page[Alert]:
    return await uow.alerts.of_candidate(caller.user_id, limit=limit, cursor=cursor)


async def delete_alert(caller: Principal, alert_id: str, uow: NotificationsUnitOfWork) -> None:
    if not await uow.alerts.delete(caller.user_id, alert_id):
        raise NotFound(f"alert {alert_id} does not exist")


# ------------------------------------------------------------------------------- webhooks


async def register_webhook(
    caller: Principal,
    registration: WebhookRegistration,
    uow: NotificationsUnitOfWork,
    *,
    allow_private: bool,
) -> Webhook:
    try:
        await check_webhook_url(registration.url, allow_private=allow_private)
    except UnsafeWebhookUrl as error:
        raise InvalidRequest(f"url: {error}", field="url") from error
    org = caller.org if caller.role is Role.EMPLOYER else None
    return await uow.webhooks.create(webhook_owner(caller), org, registration)


async def webhooks_of(
    caller: Principal, uow: NotificationsUnitOfWork, *, limit: int, cursor: str | None
) -> Page[Webhook]:
    return await uow.webhooks.of_owner(webhook_owner(caller), limit=limit, cursor=cursor)


async def delete_webhook(caller: Principal, webhook_id: str, uow: NotificationsUnitOfWork) -> None:
    if not await uow.webhooks.delete(webhook_owner(caller), webhook_id):
        raise NotFound(f"webhook {webhook_id} does not exist")


async def deliveries_of(
    caller: Principal,
    webhook_id: str,
    uow: NotificationsUnitOfWork,
    *,
    limit: int,
    cursor: str | None,
) -> Page[Notification]:
    if await uow.webhooks.get(webhook_owner(caller), webhook_id) is None:
        raise NotFound(f"webhook {webhook_id} does not exist")
    return await uow.notifications.deliveries(webhook_id, limit=limit, cursor=cursor)


async def rotate_webhook_secret(
    caller: Principal,
    webhook_id: str,
    secret: str,
    uow: NotificationsUnitOfWork,
    *,
    overlap: timedelta,
) -> Webhook:
    """Replace the secret; the former one keeps signing deliveries, besides the new one, for
    `overlap`, so receivers can switch without refusing a delivery."""
    owner = webhook_owner(caller)
    webhook = await uow.webhooks.get(owner, webhook_id)
    if webhook is None:
        raise NotFound(f"webhook {webhook_id} does not exist")
    if secret in webhook.signing_secrets(utc_now()):
        raise InvalidRequest("the new secret must differ from those in use", field="secret")
    rotated = await uow.webhooks.replace_secret(
        owner,
        webhook_id,
        expected=webhook.secret,
        secret=secret,
        retiring=webhook.retiring_after_rotation(now=utc_now(), overlap=overlap),
    )
    if rotated is None:
        raise Conflict("the secret was rotated or the webhook deleted meanwhile; try again")
    log.info("webhooks.secret_rotated", webhook_id=webhook_id, overlap_s=overlap.total_seconds())
    return rotated


@dataclass(frozen=True)
class PingResult:
    event_id: str
    attempt: DeliveryAttempt


async def ping_webhook(
    caller: Principal, webhook_id: str, uow: NotificationsUnitOfWork, *, poster: WebhookPoster
) -> PingResult:
    """Send a signed `webhook.ping` now and say how the receiver answered. Nothing is stored
    and nothing retried: it is the integrator's test of their endpoint."""
    webhook = await uow.webhooks.get(webhook_owner(caller), webhook_id)
    if webhook is None:
        raise NotFound(f"webhook {webhook_id} does not exist")
    event = WEBHOOK_PING.new(WebhookPing(webhook_id=webhook_id), source=uow.source)
    attempt = await _post(poster, webhook, serialize(event), number=1)
    return PingResult(event.id, attempt)


async def redeliver(
    caller: Principal,
    webhook_id: str,
    delivery_id: str,
    uow: NotificationsUnitOfWork,
    *,
    poster: WebhookPoster,
    lease: timedelta,
) -> Notification:
    """Send a failed delivery again, now: the same payload (so the same CloudEvent id, which
    receivers deduplicate on), recorded as one more attempt of that delivery. No retries, and
    no new `notification.delivered`: its one event told the failure already."""
    webhook = await uow.webhooks.get(webhook_owner(caller), webhook_id)
    if webhook is None:
        raise NotFound(f"webhook {webhook_id} does not exist")
    taken = await uow.notifications.take_for_redelivery(
        delivery_id, webhook_id, until=utc_now() + lease
    )
    if taken is None:
        found = (await uow.notifications.get_many([delivery_id])).get(delivery_id)
        if found is None or found.webhook_id != webhook_id:
            raise NotFound(f"delivery {delivery_id} of webhook {webhook_id} does not exist")
        raise Conflict(f"only a failed delivery is sent again; this one is {found.status.value}")
    attempt = await _post(
        poster, webhook, (taken.payload or "").encode(), number=len(taken.attempts) + 1
    )
    status = DeliveryStatus.DELIVERED if attempt.ok else DeliveryStatus.FAILED
    await uow.notifications.record_attempt(
        delivery_id, attempt, retry_at=None, final_status=status, owed=[]
    )
    DELIVERY_ATTEMPTS.labels(Channel.WEBHOOK.value, str(attempt.ok).lower()).inc()
    log.info("webhooks.redelivered", webhook_id=webhook_id, ok=attempt.ok)
    return taken.model_copy(
        update={"attempts": [*taken.attempts, attempt], "status": status, "delivery_due_at": None}
    )


async def _post(
    poster: WebhookPoster, webhook: Webhook, payload: bytes, *, number: int
) -> DeliveryAttempt:
    started, at = time.perf_counter(), utc_now()
    status_code: int | None = None
    error: str | None = None
    try:
        status_code = await poster.send(webhook.url, webhook.signing_secrets(at), payload)
    except DeliveryFailed as failure:
        status_code, error = failure.status_code, str(failure)
    return DeliveryAttempt(
        number=number,
        at=at,
        ok=error is None,
        status_code=status_code,
        error=error,
        duration_ms=round((time.perf_counter() - started) * 1000, 1),
    )

"""In-memory fakes of what the notifications use cases and the delivery worker run on."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from aiosmtpd.smtp import SMTP, Envelope, Session
from bson import ObjectId

from hirestream.notifications.domain import (
    Alert,
    AlertCriteria,
    AnnouncedPosting,
    ApplicationFacts,
    DeliveryAttempt,
    DeliveryFailed,
    DeliveryStatus,
    ListUnsubscribe,
    Notification,
    Preferences,
    RetiringSecret,
    Webhook,
    WebhookRegistration,
    user_recipient,
)
from hirestream.notifications.services import NotificationsUnitOfWork
from hirestream.notifications.store import ANONYMOUS_BODY, anonymised_payload
from hirestream.shared.events.envelope import CloudEvent
from hirestream.shared.events.notifications import Channel
from hirestream.shared.events.postings import PostingCreated
from hirestream.shared.events.types import utc_now
from hirestream.shared.privacy import ERASED_EMAIL, ERASED_NAME
from hirestream.shared.storage.pagination import Page
from tests.support.fakes import RecordingPublisher

T = TypeVar("T")
Json = dict[str, Any]

# ----------------------------------------------------------------------- in-memory fakes

_sequence = itertools.count()


def _page(items: list[T], id_of: Callable[[T], str], limit: int, cursor: str | None) -> Page[T]:
    """`items` newest first, as a cursor page; the cursor is the id of the last item shown."""
    start = 0
    if cursor is not None:
        start = next(i for i, item in enumerate(items) if id_of(item) == cursor) + 1
    shown = items[start : start + limit]
    more = len(items) > start + limit
    return Page[T](items=shown, next_cursor=id_of(shown[-1]) if more else None)


class FakeNotifications:
    """The notification store, and the delivery queue the worker leases from."""

    def __init__(self) -> None:
        self.stored: dict[str, Notification] = {}
        self._order: dict[str, int] = {}  # insertion order breaks ties of created_at
        self.reads: list[list[str]] = []  # ids of each get_many
        self.claims: list[str] = []
        self.polls = 0
        self.recorded: list[tuple[str, DeliveryStatus | None]] = []  # each record_attempt
        self.owed: list[CloudEvent[Any]] = []  # events written to the outbox with an outcome

    def put(self, *notifications: Notification) -> None:
        for notification in notifications:
            self.stored[notification.notification_id] = notification
            self._order.setdefault(notification.notification_id, next(_sequence))

    async def create(
        self, notifications: Sequence[Notification]
    ) -> tuple[list[Notification], list[str]]:
        made: list[Notification] = []
        existing: list[str] = []
        for notification in notifications:
            if notification.notification_id in self.stored:
                existing.append(notification.notification_id)
            else:
                self.put(notification)
                made.append(notification)
        return made, existing

    async def get_many(self, notification_ids: list[str]) -> dict[str, Notification]:
        self.reads.append(list(notification_ids))
        return {i: self.stored[i] for i in notification_ids if i in self.stored}

    def _newest(self, keep: Callable[[Notification], bool]) -> list[Notification]:
        found = [n for n in self.stored.values() if keep(n)]
        newest = sorted(found, key=lambda n: (n.created_at, self._order[n.notification_id]))
        return newest[::-1]

    async def inbox(
        self, recipient: str, *, limit: int, cursor: str | None, unread_only: bool = False
    ) -> Page[Notification]:
        found = self._newest(
            lambda n: n.recipient == recipient and n.in_app and not (unread_only and n.read)
        )
        return _page(found, lambda n: n.notification_id, limit, cursor)

    def _unread(self, recipient: str) -> list[Notification]:
        return [
            n for n in self.stored.values() if n.recipient == recipient and n.in_app and not n.read
        ]

    async def unread_count(self, recipient: str) -> int:
        return len(self._unread(recipient))

    async def mark_all_read(self, recipient: str) -> int:
        unread = self._unread(recipient)
        for notification in unread:
            self._change(notification.notification_id, read=True)
        return len(unread)

    async def take_for_redelivery(
        self, notification_id: str, webhook_id: str, *, until: datetime
    ) -> Notification | None:
        found = self.stored.get(notification_id)
        if (
            found is None
            or found.webhook_id != webhook_id
            or found.status is not DeliveryStatus.FAILED
        ):
            return None
        return self._change(notification_id, status=DeliveryStatus.PENDING, delivery_due_at=until)

    async def deliveries(
        self, webhook_id: str, *, limit: int, cursor: str | None
    ) -> Page[Notification]:
        found = self._newest(lambda n: n.webhook_id == webhook_id)
        return _page(found, lambda n: n.notification_id, limit, cursor)

    async def mark_read(self, recipient: str, notification_id: str) -> Notification | None:
        found = self.stored.get(notification_id)
        if found is None or found.recipient != recipient or not found.in_app:
            return None
        return self._change(notification_id, read=True)

    async def anonymise_candidate(self, candidate_id: str, application_ids: list[str]) -> int:
        changed = 0
        for n in list(self.stored.values()):
            update: Json = {}
            if n.recipient == user_recipient(candidate_id) and n.email is not None:
                update["email"] = None
            if n.subject in application_ids:
                if not n.recipient.startswith("user:"):
                    update["body"] = ANONYMOUS_BODY
                if n.payload:
                    update["payload"] = anonymised_payload(n.payload)
            if any(getattr(n, name) != value for name, value in update.items()):
                self._change(n.notification_id, **update)
                changed += 1
        return changed

    async def claim(
        self, notification_id: str, *, due_at: datetime, until: datetime
    ) -> Notification | None:
        self.claims.append(notification_id)
        found = self.stored.get(notification_id)
        if found is None or found.delivery_due_at != due_at:
            return None  # taken by another worker meanwhile, or done
        return self._change(notification_id, delivery_due_at=until)

    async def claim_due(self, *, now: datetime, lease: timedelta, limit: int) -> list[Notification]:
        self.polls += 1
        due = sorted(
            (n for n in self.stored.values() if n.delivery_due_at and n.delivery_due_at <= now),
            key=lambda n: n.delivery_due_at or now,
        )[:limit]
        claimed = [
            await self.claim(n.notification_id, due_at=n.delivery_due_at or now, until=now + lease)
            for n in due
        ]
        return [n for n in claimed if n is not None]

    async def record_attempt(
        self,
        notification_id: str,
        attempt: DeliveryAttempt,
        *,
        retry_at: datetime | None,
        final_status: DeliveryStatus | None,
        owed: list[CloudEvent[Any]],
    ) -> None:
        self.recorded.append((notification_id, final_status))
        attempts = [*self.stored[notification_id].attempts, attempt]
        if final_status is None:
            self._change(notification_id, attempts=attempts, delivery_due_at=retry_at)
        else:
            self._change(
                notification_id, attempts=attempts, delivery_due_at=None, status=final_status
            )
            self.owed += owed

    def _change(self, notification_id: str, **changes: Any) -> Notification:
        changed = self.stored[notification_id].model_copy(update=changes)
        self.stored[notification_id] = changed
        return changed

    def of(self, recipient: str) -> list[Notification]:
        """Every notification of a recipient, oldest first."""
        return self._newest(lambda n: n.recipient == recipient)[::-1]


class FakePreferences:
    def __init__(self) -> None:
        self.chosen: dict[str, Preferences] = {}

    async def get(self, recipient: str) -> Preferences:
        return self.chosen.get(recipient, Preferences())

    async def get_many(self, recipients: Sequence[str]) -> dict[str, Preferences]:
        return {r: self.chosen[r] for r in recipients if r in self.chosen}

    async def put(self, recipient: str, preferences: Preferences) -> None:
        self.chosen[recipient] = preferences


class FakeAlerts:
    def __init__(self) -> None:
        self.alerts: list[Alert] = []  # oldest first

    async def create(self, candidate_id: str, criteria: AlertCriteria) -> Alert:
        alert = Alert.model_validate(
            {
                **criteria.model_dump(),
                "alert_id": str(ObjectId()),
                "candidate_id": candidate_id,
                "created_at": utc_now(),
            }
        )
        self.alerts.append(alert)
        return alert

    async def of_candidate(
        self, candidate_id: str, *, limit: int, cursor: str | None
    ) -> Page[Alert]:
        found = [a for a in reversed(self.alerts) if a.candidate_id == candidate_id]
        return _page(found, lambda a: a.alert_id, limit, cursor)

    async def delete(self, candidate_id: str, alert_id: str) -> bool:
        kept = [a for a in self.alerts if (a.candidate_id, a.alert_id) != (candidate_id, alert_id)]
        deleted = len(kept) < len(self.alerts)
        self.alerts = kept
        return deleted

    async def delete_of_candidate(self, candidate_id: str) -> int:
        kept = [a for a in self.alerts if a.candidate_id != candidate_id]
        deleted = len(self.alerts) - len(kept)
        self.alerts = kept
        return deleted

    async def matching(self, posting: PostingCreated) -> list[Alert]:
        return [alert for alert in self.alerts if alert.matches(posting)]


class FakeWebhooks:
    def __init__(self) -> None:
        self.webhooks: list[Webhook] = []  # oldest first

    async def create(
        self, owner: str, org: str | None, registration: WebhookRegistration
    ) -> Webhook:
        webhook = Webhook.model_validate(
            {
                **registration.model_dump(),
                "webhook_id": str(ObjectId()),
                "owner": owner,
                "org": org,
                "created_at": utc_now(),
            }
        )
        self.webhooks.append(webhook)
        return webhook

    async def of_owner(self, owner: str, *, limit: int, cursor: str | None) -> Page[Webhook]:
        found = [w for w in reversed(self.webhooks) if w.owner == owner]
        return _page(found, lambda w: w.webhook_id, limit, cursor)

    async def get(self, owner: str, webhook_id: str) -> Webhook | None:
        found = await self.by_id(webhook_id)
        return found if found is not None and found.owner == owner else None

    async def by_id(self, webhook_id: str) -> Webhook | None:
        return next((w for w in self.webhooks if w.webhook_id == webhook_id), None)

    async def delete(self, owner: str, webhook_id: str) -> bool:
        found = await self.get(owner, webhook_id)
        if found is not None:
            self.webhooks.remove(found)
        return found is not None

    async def replace_secret(
        self,
        owner: str,
        webhook_id: str,
        *,
        expected: str,
        secret: str,
        retiring: list[RetiringSecret],
    ) -> Webhook | None:
        found = await self.by_id(webhook_id)
        if found is None or found.owner != owner or found.secret != expected:
            return None
        rotated = found.model_copy(update={"secret": secret, "previous_secrets": retiring})
        self.webhooks[self.webhooks.index(found)] = rotated
        return rotated

    async def subscribed(self, kind: str, orgs: set[str]) -> list[Webhook]:
        return [
            w for w in self.webhooks if kind in w.event_types and (w.org is None or w.org in orgs)
        ]


class FakeFacts:
    def __init__(self) -> None:
        self.postings: dict[str, AnnouncedPosting] = {}
        self.applications: dict[str, ApplicationFacts] = {}
        self.lookups = 0  # of one application's facts
        self._arriving: dict[str, tuple[int, ApplicationFacts]] = {}

    async def remember_posting(self, event_id: str, posting: PostingCreated) -> bool:
        if posting.posting_id in self.postings:
            return False
        self.postings[posting.posting_id] = AnnouncedPosting(
            posting.posting_id, posting.org, posting.title, posting.contact_email
        )
        return True

    async def postings_by_id(self, posting_ids: set[str]) -> dict[str, AnnouncedPosting]:
        return {i: self.postings[i] for i in posting_ids if i in self.postings}

    async def remember_applications(self, facts: list[ApplicationFacts]) -> None:
        for one in facts:
            self.applications.setdefault(one.application_id, one)

    async def anonymise_candidate(self, candidate_id: str) -> list[str]:
        ids = [i for i, f in self.applications.items() if f.candidate_id == candidate_id]
        for i in ids:
            blanked = {"candidate_name": ERASED_NAME, "candidate_email": ERASED_EMAIL}
            self.applications[i] = ApplicationFacts(**{**asdict(self.applications[i]), **blanked})
        return ids

    async def application(self, application_id: str) -> ApplicationFacts | None:
        self.lookups += 1
        arriving = self._arriving.get(application_id)
        if arriving is not None and self.lookups >= arriving[0]:
            self.applications.setdefault(application_id, arriving[1])
        return self.applications.get(application_id)

    def arriving_at_lookup(self, number: int, facts: ApplicationFacts) -> None:
        """The facts become known at the `number`-th lookup (their event is handled late)."""
        self._arriving[facts.application_id] = (number, facts)


class FakeErasureRegister:
    def __init__(self) -> None:
        self.erased: set[str] = set()
        self.looks = 0
        self._recorded_after: dict[str, int] = {}

    def erase(self, candidate_id: str, *, after_looks: int = 0) -> None:
        """Record an erasure, visible to the looks after the first `after_looks` ones (an
        erasure recorded while a use case is under way)."""
        self._recorded_after[candidate_id] = after_looks
        self._record()

    def _record(self) -> None:
        for candidate_id, after in list(self._recorded_after.items()):
            if self.looks >= after:
                self.erased.add(candidate_id)
                del self._recorded_after[candidate_id]

    async def erased_among(self, candidate_ids: Iterable[str]) -> set[str]:
        found = set(candidate_ids) & self.erased
        self.looks += 1
        self._record()
        return found


class FakeDeliveries:
    """The delivery worker as the use cases see it. `room`: whether its queue takes more."""

    LEASE = timedelta(seconds=60)

    def __init__(self, *, room: bool = True) -> None:
        self.room = room
        self.handed: list[Notification] = []
        self.wakes = 0

    def due_at_for_new(self) -> tuple[datetime, bool]:
        return (utc_now() + self.LEASE, True) if self.room else (utc_now(), False)

    def hand_over(self, notifications: list[Notification]) -> None:
        self.handed += notifications

    def wake(self) -> None:
        self.wakes += 1


@dataclass
class NotificationsFakes:
    """Every port of the notifications use cases, in memory, and their unit of work."""

    notifications: FakeNotifications = field(default_factory=FakeNotifications)
    preferences: FakePreferences = field(default_factory=FakePreferences)
    alerts: FakeAlerts = field(default_factory=FakeAlerts)
    webhooks: FakeWebhooks = field(default_factory=FakeWebhooks)
    facts: FakeFacts = field(default_factory=FakeFacts)
    erasures: FakeErasureRegister = field(default_factory=FakeErasureRegister)
    deliveries: FakeDeliveries = field(default_factory=FakeDeliveries)
    publisher: RecordingPublisher = field(default_factory=RecordingPublisher)

    def uow(self) -> NotificationsUnitOfWork:
        return NotificationsUnitOfWork(
            notifications=self.notifications,
            preferences=self.preferences,
            alerts=self.alerts,
            webhooks=self.webhooks,
            facts=self.facts,
            erasures=self.erasures,
            publish=self.publisher,
            deliveries=self.deliveries,
            source="hirestream/notifications",
        )

    def routes(self, subject: str | None = None) -> set[tuple[str, Channel, str | None]]:
        """Who was told, on which channel, at which address (about `subject`, if given)."""
        return {
            (n.recipient, n.channel, n.email)
            for n in self.notifications.stored.values()
            if subject is None or n.subject == subject
        }


class FakeMailer:
    """Records what it sends; refuses the first `fail_first` messages (all with `always_fail`)."""

    def __init__(
        self, *, fail_first: int = 0, always_fail: bool = False, takes_s: float = 0
    ) -> None:
        self.fail_first = fail_first
        self.always_fail = always_fail
        self.takes_s = takes_s
        self.tries = 0
        self.sent: list[tuple[str, str, str]] = []
        self.unsubscribe: list[ListUnsubscribe | None] = []  # each sent message's links
        self.in_flight = 0
        self.most_in_flight = 0

    async def send(
        self, to: str, title: str, body: str, unsubscribe: ListUnsubscribe | None = None
    ) -> None:
        self.tries += 1
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.takes_s)
            if self.always_fail or self.tries <= self.fail_first:
                raise DeliveryFailed("smtp: SMTPRecipientsRefused")
            self.sent.append((to, title, body))
            self.unsubscribe.append(unsubscribe)
        finally:
            self.in_flight -= 1


class FakeWebhookPoster:
    """Answers 500 to the first `fail_first` posts (all with `always_fail`), then 200.
    `posts` holds each post's url, current secret and payload; `signed_with` every secret
    each post was signed with."""

    def __init__(self, *, fail_first: int = 0, always_fail: bool = False) -> None:
        self.fail_first = fail_first
        self.always_fail = always_fail
        self.posts: list[tuple[str, str, bytes]] = []
        self.signed_with: list[list[str]] = []

    async def send(self, url: str, secrets: Sequence[str], payload: bytes) -> int:
        self.posts.append((url, secrets[0], payload))
        self.signed_with.append(list(secrets))
        if self.always_fail or len(self.posts) <= self.fail_first:
            raise DeliveryFailed("webhook answered 500")
        return 200


class SmtpRecorder:
    """An aiosmtpd handler that counts sessions and keeps every message."""

    def __init__(self) -> None:
        self.sessions = 0
        self.messages: list[bytes | str] = []

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: Any
    ) -> Any:
        self.sessions += 1
        session.host_name = hostname
        return responses

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.messages.append(envelope.content or b"")
        return "250 OK"

"""Event entrypoint of the notifications service: who is told what, made exactly once.

Each handler remembers what later events will need, asks the domain for the plan, and stores
every planned notification under its deterministic id. A redelivered event finds them all
stored and changes nothing; the offset is committed after the handler returns (at least once),
so the effect is exactly once. `application.submitted`, the busy topic, is handled a batch at a
time: a few database commands per batch, not per event (ADR 0005).

In-app notifications are delivered by being stored. Their `notification.delivered` events do
not go through an outbox: the handler publishes them after the insert and before the offset
commit, so the source event itself is the durable record that they are owed. A redelivered
source event publishes them again, identical (id and time derived from the stored notification),
and consumers drop the copy by id. Email and webhook notifications are stored leased to this
process's delivery worker and handed to it; it records each outcome with its event (outbox).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from faststream.kafka import KafkaBroker

from hirestream.notifications.delivery import DeliveryWorker
from hirestream.notifications.domain import (
    ApplicationFacts,
    PlannedNotification,
    Preferences,
    delivered_event_id,
    notification_id,
    org_recipient,
    plan_application_submitted,
    plan_posting_created,
    plan_status_changed,
)
from hirestream.notifications.store import (
    AlertStore,
    FactStore,
    NotificationStore,
    PreferenceStore,
    WebhookStore,
)
from hirestream.shared.events.applications import (
    APPLICATION_STATUS_CHANGED,
    APPLICATION_SUBMITTED,
    ApplicationStatusChanged,
    ApplicationSubmitted,
)
from hirestream.shared.events.envelope import CloudEvent, serialize
from hirestream.shared.events.notifications import (
    NOTIFICATION_DELIVERED,
    Channel,
    DeliveryOutcome,
    NotificationDelivered,
)
from hirestream.shared.events.postings import POSTING_CREATED, PostingCreated
from hirestream.shared.events.types import utc_now
from hirestream.shared.messaging.consuming import subscribe, subscribe_batch
from hirestream.shared.privacy import ERASED_EMAIL, ERASED_NAME, ErasureLedger, register_erasure

GROUP_ID = "notifications"
# At most ~2 s held on one status change (its partition waits meanwhile).
FACTS_PATIENCE_ROUNDS = 8
FACTS_PATIENCE_STEP_S = 0.25

log = structlog.get_logger(__name__)

Document = dict[str, Any]
PublishEvent = Callable[[CloudEvent[Any]], Awaitable[None]]


@dataclass(frozen=True)
class Occasion:
    """One event and the notifications it calls for, before the webhooks are added."""

    event: CloudEvent[Any]
    plan: Sequence[PlannedNotification]
    org: str


@dataclass
class Notifier:
    """Turns events into their notifications, each stored once."""

    notifications: NotificationStore
    preferences: PreferenceStore
    alerts: AlertStore
    webhooks: WebhookStore
    facts: FactStore
    publish: PublishEvent
    worker: DeliveryWorker
    erasures: ErasureLedger
    source: str

    async def anonymise_candidate(self, candidate_id: str) -> dict[str, int]:
        application_ids = await self.facts.anonymise_candidate(candidate_id)
        return {
            "applications_seen": len(application_ids),
            "notifications": await self.notifications.anonymise_candidate(
                candidate_id, application_ids
            ),
            "alerts": await self.alerts.delete_of_candidate(candidate_id),
        }

    async def on_posting_created(self, event: CloudEvent[Any]) -> None:
        posting: PostingCreated = event.data
        await self.facts.remember_posting(event.id, posting)
        matches = await self.alerts.matching(posting)
        recipients = [f"user:{candidate_id}" for candidate_id, _ in matches]
        preferences = await self.preferences.get_many(recipients)
        plan = plan_posting_created(posting, matches, preferences)
        await self._notify(event.type, [Occasion(event, plan, posting.org)])
        await self._anonymise_erased_meanwhile({candidate_id for candidate_id, _ in matches})

    async def on_application_submitted(self, event: CloudEvent[Any]) -> None:
        await self.on_applications_submitted([event])

    async def on_applications_submitted(self, events: list[CloudEvent[Any]]) -> None:
        """A batch of `application.submitted`: the same queries whatever its size, and the
        reads sent together (none needs another's answer)."""
        recipients = set()
        candidates = {_candidate_id(event) for event in events}
        for event in events:
            recipients |= {f"user:{_candidate_id(event)}", f"org:{event.data.org}"}
        erased, postings, preferences = await asyncio.gather(
            self.erasures.erased_among(candidates),
            self.facts.postings_by_id({event.data.posting_id for event in events}),
            self.preferences.get_many(sorted(recipients)),
        )
        # A replay of an event from before an erasure must not bring the person back.
        events = [_without_person(e) if _candidate_id(e) in erased else e for e in events]
        facts = [_application_facts(event.data, postings) for event in events]
        await self.facts.remember_applications(facts)
        occasions = []
        for event, known in zip(events, facts, strict=True):
            plan = plan_application_submitted(
                event.data, known.posting_title, known.contact_email, preferences
            )
            occasions.append(Occasion(event, plan, event.data.org))
        await self._notify(APPLICATION_SUBMITTED.name, occasions, preferences)
        await self._anonymise_erased_meanwhile(candidates - erased)

    async def _anonymise_erased_meanwhile(self, candidate_ids: set[str]) -> None:
        """Anonymise what was just written of candidates whose erasure was recorded while it
        was being written: the erasure found none of it (shared.privacy.erasure_handler)."""
        if candidate_ids:
            for candidate_id in await self.erasures.erased_among(candidate_ids):
                await self.anonymise_candidate(candidate_id)

    async def on_status_changed(self, event: CloudEvent[Any]) -> None:
        change: ApplicationStatusChanged = event.data
        facts = await self._application_facts(change.application_id)
        recipients = [f"user:{change.candidate_id}", f"org:{change.org}"]
        plan = plan_status_changed(change, facts, await self.preferences.get_many(recipients))
        await self._notify(event.type, [Occasion(event, plan, change.org)])

    async def _application_facts(self, application_id: str) -> ApplicationFacts | None:
        """The facts of an application, waiting briefly for them: `application.submitted`
        and a quick first status change travel on different topics and may be handled in
        either order. Without them the candidate is still told in-app, not by email."""
        for _ in range(FACTS_PATIENCE_ROUNDS):
            facts = await self.facts.application(application_id)
            if facts is not None:
                return facts
            await asyncio.sleep(FACTS_PATIENCE_STEP_S)
        log.warning("notifications.facts_missing", application_id=application_id)
        return None

    async def _notify(
        self,
        kind: str,
        occasions: list[Occasion],
        preferences: Mapping[str, Preferences] | None = None,
    ) -> None:
        """Store every notification of these events in one write, announce the in-app ones,
        and hand the deliveries to the worker. `preferences`: those already read, the orgs'
        among them."""
        due_at, hand_over = self.worker.due_at_for_new()
        orgs = {occasion.org for occasion in occasions}
        org_preferences: Mapping[str, Preferences]
        if preferences is None:
            org_preferences, webhooks = await asyncio.gather(
                self.preferences.get_many(sorted(map(org_recipient, orgs))),
                self.webhooks.subscribed(kind, orgs),
            )
        else:
            org_preferences = preferences
            webhooks = await self.webhooks.subscribed(kind, orgs)
        planned: list[Document] = []
        for occasion in occasions:
            event = occasion.event
            planned += [self._document(event, one, due_at) for one in occasion.plan]
            wanted = org_preferences.get(org_recipient(occasion.org), Preferences())
            for webhook in webhooks:
                # An org's webhooks follow its preferences; an admin's (org None) always deliver.
                if webhook.get("org") is None or (
                    webhook["org"] == occasion.org and wanted.wants(kind, Channel.WEBHOOK)
                ):
                    planned.append(self._webhook(event, webhook, due_at))
        made, existing = await self.notifications.create(planned)
        correlation = {occasion.event.id: occasion.event.correlationid for occasion in occasions}
        await self._announce_in_app(made, correlation)
        if existing:  # a redelivered event: announce again what a crash may have cut short
            known = set(existing)
            again = await self.notifications.stored(
                [doc["_id"] for doc in planned if _in_app(doc) and doc["_id"] in known]
            )
            await self._announce_in_app(again, correlation)
        deliveries = [doc for doc in made if not _in_app(doc)]
        if hand_over:
            self.worker.hand_over(deliveries)
        elif deliveries:
            self.worker.wake()
        log.info(
            "notifications.made",
            kind=kind,
            events=len(occasions),
            planned=len(planned),
            new=len(made),
        )

    async def _announce_in_app(
        self, documents: Iterable[Document], correlation: dict[str, str | None]
    ) -> None:
        """Publish `notification.delivered` for stored in-app notifications, derived from the
        stored document alone, so each comes out the same however often it is announced."""
        events = [
            NOTIFICATION_DELIVERED.new(
                NotificationDelivered(
                    notification_id=document["_id"],
                    channel=Channel.IN_APP,
                    recipient=document["recipient"],
                    kind=document["kind"],
                    subject=document["subject"],
                    source_event_id=document["source_event_id"],
                    outcome=DeliveryOutcome.DELIVERED,
                    attempts=1,
                    at=document["created_at"],
                ),
                source=self.source,
                correlation_id=correlation.get(document["source_event_id"]),
                event_id=delivered_event_id(document["_id"]),
                time=document["created_at"],
            )
            for document in documents
            if _in_app(document)
        ]
        # Concurrently: the producer batches them into a few requests to the broker.
        await asyncio.gather(*(self.publish(event) for event in events))

    def _base(self, event: CloudEvent[Any], recipient: str, channel: Channel) -> Document:
        return {
            "_id": notification_id(event.id, recipient, channel),
            "recipient": recipient,
            "channel": channel.value,
            "kind": event.type,
            "subject": event.subject,
            "source_event_id": event.id,
            "correlation_id": event.correlationid,
            # Whole milliseconds, as the database keeps them: an event derived from the
            # document in memory and one derived from it as stored must be the same.
            "created_at": _millis(utc_now()),
        }

    def _document(
        self, event: CloudEvent[Any], planned: PlannedNotification, due_at: datetime
    ) -> Document:
        """One planned notification as its document."""
        document = {
            **self._base(event, planned.recipient, planned.channel),
            "title": planned.title,
            "body": planned.body,
        }
        if planned.channel is Channel.IN_APP:
            return {**document, "read": False, "status": DeliveryOutcome.DELIVERED.value}
        pending: Document = {"email": planned.email, "status": "pending", "attempts": []}
        return {**document, **pending, "delivery_due_at": due_at}

    def _webhook(self, event: CloudEvent[Any], webhook: Document, due_at: datetime) -> Document:
        recipient = f"webhook:{webhook['_id']}"
        return {
            **self._base(event, recipient, Channel.WEBHOOK),
            "webhook_id": str(webhook["_id"]),
            "payload": serialize(event).decode(),
            "status": "pending",
            "attempts": [],
            "delivery_due_at": due_at,
        }


def _in_app(document: Document) -> bool:
    return bool(document["channel"] == Channel.IN_APP.value)


def _millis(moment: datetime) -> datetime:
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _candidate_id(event: CloudEvent[Any]) -> str:
    return str(event.data.candidate.candidate_id)


def _without_person(event: CloudEvent[Any]) -> CloudEvent[Any]:
    application: ApplicationSubmitted = event.data
    erased = application.candidate.model_copy(update={"name": ERASED_NAME, "email": ERASED_EMAIL})
    return event.model_copy(update={"data": application.model_copy(update={"candidate": erased})})


def _application_facts(
    application: ApplicationSubmitted, postings: dict[str, Document]
) -> ApplicationFacts:
    posting = postings.get(application.posting_id, {})
    return ApplicationFacts(
        application_id=application.application_id,
        candidate_id=application.candidate.candidate_id,
        candidate_name=application.candidate.name,
        candidate_email=application.candidate.email,
        posting_id=application.posting_id,
        posting_title=posting.get("title"),
        org=application.org,
        contact_email=posting.get("contact_email"),
    )


PRIVACY_GROUP_ID = "notifications.privacy"
KEPT = ["notification counts and kinds", "delivery outcomes and attempts", "preferences"]


def register_consumers(broker: KafkaBroker, notifier: Notifier) -> None:
    register_erasure(
        broker,
        notifier.erasures,
        group_id=PRIVACY_GROUP_ID,
        anonymise=notifier.anonymise_candidate,
        kept=KEPT,
    )
    subscribe(broker, POSTING_CREATED, group_id=GROUP_ID, handle=notifier.on_posting_created)
    subscribe_batch(
        broker,
        APPLICATION_SUBMITTED,
        group_id=GROUP_ID,
        handle_batch=notifier.on_applications_submitted,
        handle=notifier.on_application_submitted,
    )
    subscribe(
        broker, APPLICATION_STATUS_CHANGED, group_id=GROUP_ID, handle=notifier.on_status_changed
    )

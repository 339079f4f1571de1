"""Event entrypoint of the notifications service: who is told what, made exactly once.

Each handler remembers what later events will need, asks the domain for the plan, and stores
every planned notification under its deterministic id. A redelivered event finds them all
stored and changes nothing; the offset is committed after the handler returns (at least once),
so the effect is exactly once. In-app notifications are delivered by being stored; email and
webhook ones are stored leased to this process's delivery worker and handed to it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from faststream.kafka import KafkaBroker

from hirestream.notifications.delivery import DeliveryWorker
from hirestream.notifications.domain import (
    ApplicationFacts,
    PlannedNotification,
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
from hirestream.shared.messaging.consuming import subscribe
from hirestream.shared.messaging.outbox import OutboxRelay
from hirestream.shared.privacy import ERASED_EMAIL, ERASED_NAME, ErasureLedger, register_erasure

GROUP_ID = "notifications"
# At most ~2 s held on one status change (its partition waits meanwhile).
FACTS_PATIENCE_ROUNDS = 8
FACTS_PATIENCE_STEP_S = 0.25

log = structlog.get_logger(__name__)


@dataclass
class Notifier:
    """Turns one event into its notifications, each stored once."""

    notifications: NotificationStore
    preferences: PreferenceStore
    alerts: AlertStore
    webhooks: WebhookStore
    facts: FactStore
    relay: OutboxRelay
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
        await self._make(event, plan, org=posting.org)

    async def on_application_submitted(self, event: CloudEvent[Any]) -> None:
        application: ApplicationSubmitted = event.data
        if await self.erasures.is_erased(application.candidate.candidate_id):
            # A replay of an event from before the erasure: it must not bring the person back.
            application = application.model_copy(
                update={
                    "candidate": application.candidate.model_copy(
                        update={"name": ERASED_NAME, "email": ERASED_EMAIL}
                    )
                }
            )
            event = event.model_copy(update={"data": application})
        posting = await self.facts.posting(application.posting_id) or {}
        await self.facts.remember_application(
            ApplicationFacts(
                application_id=application.application_id,
                candidate_id=application.candidate.candidate_id,
                candidate_name=application.candidate.name,
                candidate_email=application.candidate.email,
                posting_id=application.posting_id,
                posting_title=posting.get("title"),
                org=application.org,
                contact_email=posting.get("contact_email"),
            )
        )
        recipients = [f"user:{application.candidate.candidate_id}", f"org:{application.org}"]
        plan = plan_application_submitted(
            application,
            posting.get("title"),
            posting.get("contact_email"),
            await self.preferences.get_many(recipients),
        )
        await self._make(event, plan, org=application.org)

    async def on_status_changed(self, event: CloudEvent[Any]) -> None:
        change: ApplicationStatusChanged = event.data
        facts = await self._application_facts(change.application_id)
        recipients = [f"user:{change.candidate_id}", f"org:{change.org}"]
        plan = plan_status_changed(change, facts, await self.preferences.get_many(recipients))
        await self._make(event, plan, org=change.org)

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

    async def _make(
        self, event: CloudEvent[Any], plan: Sequence[PlannedNotification], *, org: str
    ) -> None:
        due_at, hand_over = self.worker.due_at_for_new()
        planned = [self._planned(event, notification, due_at) for notification in plan]
        org_preferences = await self.preferences.get(org_recipient(org))
        for webhook in await self.webhooks.subscribed(event.type, org):
            # An org's webhooks follow its preferences; an admin's (org None) always deliver.
            if webhook.get("org") is None or org_preferences.wants(event.type, Channel.WEBHOOK):
                planned.append((self._webhook(event, webhook, due_at), []))
        made = await self.notifications.create(planned)  # one write for the whole event
        for document in made:
            if document["channel"] == Channel.IN_APP.value:
                self.relay.notify(document["_id"])
        deliveries = [doc for doc in made if doc["channel"] != Channel.IN_APP.value]
        if hand_over:
            self.worker.hand_over(deliveries)
        elif deliveries:
            self.worker.wake()
        log.info("notifications.made", kind=event.type, planned=len(planned), new=len(made))

    def _base(self, event: CloudEvent[Any], recipient: str, channel: Channel) -> dict[str, Any]:
        return {
            "_id": notification_id(event.id, recipient, channel),
            "recipient": recipient,
            "channel": channel.value,
            "kind": event.type,
            "subject": event.subject,
            "source_event_id": event.id,
            "correlation_id": event.correlationid,
            "created_at": utc_now(),
        }

    def _planned(
        self, event: CloudEvent[Any], planned: PlannedNotification, due_at: datetime
    ) -> tuple[dict[str, Any], list[CloudEvent[Any]]]:
        """One planned notification as its document and the events of its outbox."""
        document = {
            **self._base(event, planned.recipient, planned.channel),
            "title": planned.title,
            "body": planned.body,
        }
        if planned.channel is not Channel.IN_APP:
            pending: dict[str, Any] = {"email": planned.email, "status": "pending", "attempts": []}
            return {**document, **pending, "delivery_due_at": due_at}, []
        # Stored is delivered: the outcome event goes in the same write.
        delivered = NOTIFICATION_DELIVERED.new(
            NotificationDelivered(
                notification_id=document["_id"],
                channel=Channel.IN_APP,
                recipient=planned.recipient,
                kind=event.type,
                subject=event.subject,
                source_event_id=event.id,
                outcome=DeliveryOutcome.DELIVERED,
                attempts=1,
                at=document["created_at"],
            ),
            source=self.source,
            correlation_id=event.correlationid,
        )
        return {**document, "read": False, "status": DeliveryOutcome.DELIVERED.value}, [delivered]

    def _webhook(
        self, event: CloudEvent[Any], webhook: dict[str, Any], due_at: datetime
    ) -> dict[str, Any]:
        recipient = f"webhook:{webhook['_id']}"
        return {
            **self._base(event, recipient, Channel.WEBHOOK),
            "webhook_id": str(webhook["_id"]),
            "payload": serialize(event).decode(),
            "status": "pending",
            "attempts": [],
            "delivery_due_at": due_at,
        }


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
    subscribe(
        broker, APPLICATION_SUBMITTED, group_id=GROUP_ID, handle=notifier.on_application_submitted
    )
    subscribe(
        broker, APPLICATION_STATUS_CHANGED, group_id=GROUP_ID, handle=notifier.on_status_changed
    )

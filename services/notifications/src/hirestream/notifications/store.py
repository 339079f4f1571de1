"""Storage of the notifications service.

Collections, their indexes, and what each index serves:
- `notifications`: every notification, one document per (event, recipient, channel), its id
  derived from those three so a redelivered event inserts nothing new. In-app ones form the
  inbox (`inbox_newest`: recipient, channel, created_at, _id); email and webhook ones carry
  their delivery and its attempts (`delivery_due`: the delivery worker's queue;
  `webhook_newest`: a webhook's delivery log); a delivery's `notification.delivered` waits in
  its outbox only when the broker was away as it ended (`outbox_due`).
- `preferences`: one document per recipient (`_id`).
- `alerts`: saved searches; `anchor` (see domain.AlertCriteria.anchor) selects the few alerts a
  posting can match; `candidate_newest` lists a candidate's alerts.
- `webhooks`: registrations; `subscribed` (event_types, org) finds those an event goes to.
- `announced_postings`, `applications_seen`: facts remembered from events (titles, contact
  addresses) that later events lack.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo import IndexModel, ReturnDocument, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from hirestream.notifications.domain import (
    MATCH_ALL,
    Alert,
    AlertCriteria,
    AnnouncedPosting,
    ApplicationFacts,
    DeliveryAttempt,
    DeliveryStatus,
    Notification,
    Preferences,
    RetiringSecret,
    Webhook,
    WebhookRegistration,
    posting_keys,
    user_recipient,
)
from hirestream.shared.events.envelope import CloudEvent
from hirestream.shared.events.notifications import Channel
from hirestream.shared.events.postings import PostingCreated
from hirestream.shared.events.types import utc_now
from hirestream.shared.messaging.outbox import (
    OUTBOX_FIELDS,
    OUTBOX_INDEX,
    append_outbox_update,
    outbox_entry,
)
from hirestream.shared.privacy import ERASED_EMAIL, ERASED_NAME
from hirestream.shared.storage.group_commit import GroupCommit, Write, bulk_writer
from hirestream.shared.storage.mongo import (
    CollectionIndexes,
    Document,
    insert_new,
    object_id_or_none,
)
from hirestream.shared.storage.pagination import Page, after_cursor, newest_first, page_of

NOTIFICATIONS = "notifications"
PREFERENCES = "preferences"
ALERTS = "alerts"
WEBHOOKS = "webhooks"
ANNOUNCED_POSTINGS = "announced_postings"
APPLICATIONS_SEEN = "applications_seen"
DUE = "delivery_due_at"
NEWEST = newest_first("created_at")
NOT_RETURNED = dict.fromkeys(OUTBOX_FIELDS, 0)

INDEXES = [
    CollectionIndexes(
        NOTIFICATIONS,
        [
            IndexModel([("recipient", 1), ("channel", 1), *NEWEST], name="inbox_newest"),
            IndexModel([(DUE, 1)], name="delivery_due"),
            IndexModel([("webhook_id", 1), *NEWEST], name="webhook_newest"),
            IndexModel([("subject", 1)], name="subject"),  # erasure finds what concerns one
            IndexModel(OUTBOX_INDEX, name="outbox_due"),
        ],
    ),
    CollectionIndexes(
        ALERTS,
        [
            IndexModel([("anchor", 1)], name="anchor"),
            IndexModel([("candidate_id", 1), *NEWEST], name="candidate_newest"),
        ],
    ),
    CollectionIndexes(
        WEBHOOKS,
        [
            IndexModel([("event_types", 1), ("org", 1)], name="subscribed"),
            IndexModel([("owner", 1), *NEWEST], name="owner_newest"),
        ],
    ),
]

ANONYMOUS_BODY = "A candidate's application (their personal data was erased)."


def anonymised_payload(payload: str) -> str:
    """A stored webhook payload (a CloudEvent) without the candidate's name and address."""
    try:
        event = json.loads(payload)
    except ValueError:
        return ""
    candidate = event.get("data", {}).get("candidate")
    if isinstance(candidate, dict):
        candidate.update({"name": ERASED_NAME, "email": ERASED_EMAIL})
    for personal in ("resume_url", "cover_letter"):
        if personal in event.get("data", {}):
            event["data"][personal] = None
    return json.dumps(event, separators=(",", ":"))


def _document(notification: Notification) -> Document:
    fields = notification.model_dump(mode="python", exclude_none=True)
    return {"_id": fields.pop("notification_id"), **fields}


def _notification(document: Document) -> Notification:
    return Notification.model_validate({**document, "notification_id": document["_id"]})


def _inbox_query(recipient: str, *, unread_only: bool) -> Document:
    query: Document = {"recipient": recipient, "channel": Channel.IN_APP.value}
    if unread_only:
        query["read"] = False
    return query


class NotificationStore:
    """Notifications, the inbox, and the delivery queue of email and webhook ones."""

    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self.collection = collection
        self._updates: GroupCommit[Write, None] = GroupCommit(bulk_writer(collection))

    async def create(
        self, notifications: Sequence[Notification]
    ) -> tuple[list[Notification], list[str]]:
        """Insert each notification once, all in one round trip. Returns the ones that were
        new, and the ids of those that existed already (a redelivered event): the unique `_id`
        refused them and they are left as they are."""
        existing = await insert_new(
            self.collection, [_document(notification) for notification in notifications]
        )
        made = [n for i, n in enumerate(notifications) if i not in existing]
        return made, [notifications[i].notification_id for i in sorted(existing)]

    async def get_many(self, notification_ids: list[str]) -> dict[str, Notification]:
        """The notifications of these ids that exist, by id: one query for a batch."""
        found = self.collection.find({"_id": {"$in": notification_ids}}, projection=NOT_RETURNED)
        return {document["_id"]: _notification(document) async for document in found}

    async def inbox(
        self, recipient: str, *, limit: int, cursor: str | None, unread_only: bool = False
    ) -> Page[Notification]:
        query = _inbox_query(recipient, unread_only=unread_only)
        return await self._page(query, limit, cursor)

    async def unread_count(self, recipient: str) -> int:
        """Counted on `inbox_newest`: the recipient's in-app items, those unread among them."""
        return await self.collection.count_documents(_inbox_query(recipient, unread_only=True))

    async def mark_all_read(self, recipient: str) -> int:
        """Every unread in-app item of the recipient marked read; how many were unread."""
        result = await self.collection.update_many(
            _inbox_query(recipient, unread_only=True), {"$set": {"read": True}}
        )
        return result.modified_count

    async def deliveries(
        self, webhook_id: str, *, limit: int, cursor: str | None
    ) -> Page[Notification]:
        return await self._page({"webhook_id": webhook_id}, limit, cursor)

    async def _page(self, query: Document, limit: int, cursor: str | None) -> Page[Notification]:
        if cursor:
            query = {**query, **after_cursor("created_at", cursor)}
        documents = (
            await self.collection.find(query, projection=NOT_RETURNED)
            .sort(NEWEST)
            .limit(limit + 1)
            .to_list()
        )
        return page_of(documents, limit, "created_at", _notification)

    async def mark_read(self, recipient: str, notification_id: str) -> Notification | None:
        document = await self.collection.find_one_and_update(
            {"_id": notification_id, "recipient": recipient, "channel": Channel.IN_APP.value},
            {"$set": {"read": True}},
            return_document=ReturnDocument.AFTER,
        )
        return _notification(document) if document else None

    async def take_for_redelivery(
        self, notification_id: str, webhook_id: str, *, until: datetime
    ) -> Notification | None:
        """A failed webhook delivery made pending again and leased until `until` to whoever
        sends it again; None if it is not a failed delivery of that webhook (any more). If the
        sender dies, the lease runs out and the worker's poll takes it up."""
        document = await self.collection.find_one_and_update(
            {
                "_id": notification_id,
                "webhook_id": webhook_id,
                "status": DeliveryStatus.FAILED.value,
            },
            {"$set": {"status": DeliveryStatus.PENDING.value, DUE: until}},
            return_document=ReturnDocument.AFTER,
        )
        return _notification(document) if document else None

    async def claim_due(self, *, now: datetime, lease: timedelta, limit: int) -> list[Notification]:
        """Take up to `limit` email or webhook deliveries that are due, for `lease`; fewer when
        other workers took some of those found first. One read for the batch, then a
        compare-and-set by `_id` on each due time read: most polls find nothing, and a read
        does not queue behind writes as a findAndModify with a sort would."""
        found = (
            await self.collection.find({DUE: {"$lte": now}}, projection={DUE: 1})
            .sort(DUE, 1)
            .limit(limit)
            .to_list()
        )
        claimed = [
            await self.claim(document["_id"], due_at=document[DUE], until=now + lease)
            for document in found
        ]
        return [notification for notification in claimed if notification is not None]

    async def claim(
        self, notification_id: str, *, due_at: datetime, until: datetime
    ) -> Notification | None:
        """Lease one delivery until `until` if its due time is still `due_at` (nobody took it
        meanwhile, and it is not done); the delivery, or None."""
        document = await self.collection.find_one_and_update(
            {"_id": notification_id, DUE: due_at},
            {"$set": {DUE: until}},
            return_document=ReturnDocument.AFTER,
        )
        return _notification(document) if document else None

    async def record_attempt(
        self,
        notification_id: str,
        attempt: DeliveryAttempt,
        *,
        retry_at: datetime | None,
        final_status: DeliveryStatus | None,
        owed: list[CloudEvent[Any]],
    ) -> None:
        """One attempt's outcome: retry later, or the final status (with its event in the
        outbox when it could not be published). Attempts recorded at the same time leave in
        one command."""
        update: Document = {"$push": {"attempts": attempt.model_dump(mode="python")}}
        if final_status is None:
            update["$set"] = {DUE: retry_at}
        else:
            update["$set"] = {DUE: None, "status": final_status.value}
            if owed:
                appended = append_outbox_update([outbox_entry(event) for event in owed])
                update["$set"].update(appended["$set"])
                update["$push"].update(appended["$push"])
        await self._updates.submit(UpdateOne({"_id": notification_id}, update))

    async def anonymise_candidate(self, candidate_id: str, application_ids: list[str]) -> int:
        """Erasure: no address of the candidate, no name in anyone's notification about their
        applications, no personal data in stored webhook payloads. Idempotent."""
        result = await self.collection.update_many(
            {"recipient": user_recipient(candidate_id), "email": {"$ne": None}},
            {"$set": {"email": None}},
        )
        changed = result.modified_count
        if not application_ids:
            return changed
        async for document in self.collection.find({"subject": {"$in": application_ids}}):
            update: Document = {}
            if not document["recipient"].startswith("user:"):
                update["body"] = ANONYMOUS_BODY
            if document.get("payload"):
                update["payload"] = anonymised_payload(document["payload"])
            if any(document.get(name) != value for name, value in update.items()):
                await self.collection.update_one({"_id": document["_id"]}, {"$set": update})
                changed += 1
        return changed


class PreferenceStore:
    """Stored as a list of {kind, channels}: event kinds contain dots, and a caller's words
    never become field names in our documents."""

    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self.collection = collection

    async def get(self, recipient: str) -> Preferences:
        document = await self.collection.find_one({"_id": recipient})
        return _preferences(document) if document else Preferences()

    async def get_many(self, recipients: Sequence[str]) -> dict[str, Preferences]:
        found = self.collection.find({"_id": {"$in": list(recipients)}})
        return {document["_id"]: _preferences(document) async for document in found}

    async def put(self, recipient: str, preferences: Preferences) -> None:
        chosen = [
            {"kind": kind, "channels": [channel.value for channel in channels]}
            for kind, channels in preferences.channels.items()
        ]
        await self.collection.update_one(
            {"_id": recipient}, {"$set": {"chosen": chosen}}, upsert=True
        )


def _preferences(document: Document) -> Preferences:
    return Preferences.model_validate(
        {"channels": {item["kind"]: item["channels"] for item in document.get("chosen", [])}}
    )


def _alert(document: Document) -> Alert:
    return Alert.model_validate({**document, "alert_id": str(document["_id"])})


def _webhook(document: Document) -> Webhook:
    return Webhook.model_validate({**document, "webhook_id": str(document["_id"])})


async def _newest_page(
    collection: AsyncCollection[Document], query: Document, limit: int, cursor: str | None
) -> list[Document]:
    if cursor:
        query = {**query, **after_cursor("created_at", cursor)}
    return await collection.find(query).sort(NEWEST).limit(limit + 1).to_list()


class AlertStore:
    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self.collection = collection

    async def create(self, candidate_id: str, criteria: AlertCriteria) -> Alert:
        document = {
            "_id": ObjectId(),
            "candidate_id": candidate_id,
            **criteria.model_dump(mode="json"),
            "anchor": criteria.anchor(),
            "created_at": utc_now(),
        }
        await self.collection.insert_one(document)
        return _alert(document)

    async def of_candidate(
        self, candidate_id: str, *, limit: int, cursor: str | None
    ) -> Page[Alert]:
        found = await _newest_page(self.collection, {"candidate_id": candidate_id}, limit, cursor)
        return page_of(found, limit, "created_at", _alert)

    async def delete(self, candidate_id: str, alert_id: str) -> bool:
        object_id = object_id_or_none(alert_id)
        if object_id is None:
            return False
        result = await self.collection.delete_one({"_id": object_id, "candidate_id": candidate_id})
        return result.deleted_count == 1

    async def delete_of_candidate(self, candidate_id: str) -> int:
        """Erasure: a saved search holds an email address and a person's wishes."""
        result = await self.collection.delete_many({"candidate_id": candidate_id})
        return result.deleted_count

    async def matching(self, posting: PostingCreated) -> list[Alert]:
        """Every alert the posting matches. Reads only the alerts anchored on one of the
        posting's keys (index `anchor`), then checks each alert's every criterion."""
        anchors = [*posting_keys(posting), MATCH_ALL]
        found = self.collection.find({"anchor": {"$in": anchors}})
        alerts = [_alert(document) async for document in found]
        return [alert for alert in alerts if alert.matches(posting)]


class WebhookStore:
    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self.collection = collection

    async def create(
        self, owner: str, org: str | None, registration: WebhookRegistration
    ) -> Webhook:
        document = {
            "_id": ObjectId(),
            "owner": owner,
            "org": org,
            **registration.model_dump(),
            "created_at": utc_now(),
        }
        await self.collection.insert_one(document)
        return _webhook(document)

    async def of_owner(self, owner: str, *, limit: int, cursor: str | None) -> Page[Webhook]:
        found = await _newest_page(self.collection, {"owner": owner}, limit, cursor)
        return page_of(found, limit, "created_at", _webhook)

    async def get(self, owner: str, webhook_id: str) -> Webhook | None:
        object_id = object_id_or_none(webhook_id)
        if object_id is None:
            return None
        document = await self.collection.find_one({"_id": object_id, "owner": owner})
        return _webhook(document) if document else None

    async def by_id(self, webhook_id: str) -> Webhook | None:
        object_id = object_id_or_none(webhook_id)
        document = None if object_id is None else await self.collection.find_one({"_id": object_id})
        return _webhook(document) if document else None

    async def delete(self, owner: str, webhook_id: str) -> bool:
        object_id = object_id_or_none(webhook_id)
        if object_id is None:
            return False
        result = await self.collection.delete_one({"_id": object_id, "owner": owner})
        return result.deleted_count == 1

    async def replace_secret(
        self,
        owner: str,
        webhook_id: str,
        *,
        expected: str,
        secret: str,
        retiring: list[RetiringSecret],
    ) -> Webhook | None:
        """Set the new secret and the former ones still signing, if the secret is still
        `expected` (a rotation read it); None if the webhook is gone or another rotation came
        first."""
        object_id = object_id_or_none(webhook_id)
        if object_id is None:
            return None
        document = await self.collection.find_one_and_update(
            {"_id": object_id, "owner": owner, "secret": expected},
            {
                "$set": {
                    "secret": secret,
                    "previous_secrets": [one.model_dump(mode="python") for one in retiring],
                }
            },
            return_document=ReturnDocument.AFTER,
        )
        return _webhook(document) if document else None

    async def subscribed(self, kind: str, orgs: set[str]) -> list[Webhook]:
        """The webhooks that want `kind` from any of these orgs, and the admins' (org None)."""
        query = {"event_types": kind, "org": {"$in": [*sorted(orgs), None]}}
        return [_webhook(document) async for document in self.collection.find(query)]


class FactStore:
    """Facts remembered from earlier events, for later events that lack them."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.postings = db[ANNOUNCED_POSTINGS]
        self.applications = db[APPLICATIONS_SEEN]

    async def remember_posting(self, event_id: str, posting: PostingCreated) -> bool:
        """Record the announcement once; True if new."""
        result = await self.postings.update_one(
            {"_id": posting.posting_id},
            {
                "$setOnInsert": {
                    "org": posting.org,
                    "title": posting.title,
                    "contact_email": posting.contact_email,
                    "version": posting.version,
                    "announced_by_event": event_id,
                    "announced_at": posting.created_at,
                }
            },
            upsert=True,
        )
        return result.upserted_id is not None

    async def postings_by_id(self, posting_ids: set[str]) -> dict[str, AnnouncedPosting]:
        found = self.postings.find({"_id": {"$in": sorted(posting_ids)}})
        return {
            document["_id"]: AnnouncedPosting(
                posting_id=document["_id"],
                org=document.get("org", ""),
                title=document.get("title"),
                contact_email=document.get("contact_email"),
            )
            async for document in found
        }

    async def remember_applications(self, facts: list[ApplicationFacts]) -> None:
        """Record each application's facts once; those already known stay as they are (an
        erasure may have blanked them since)."""
        documents = []
        for one in facts:
            fields = asdict(one)
            documents.append({"_id": fields.pop("application_id"), **fields})
        await insert_new(self.applications, documents)

    async def anonymise_candidate(self, candidate_id: str) -> list[str]:
        """Erasure: blank the candidate's name and address; returns their application ids."""
        ids = [d["_id"] async for d in self.applications.find({"candidate_id": candidate_id})]
        await self.applications.update_many(
            {"candidate_id": candidate_id},
            {"$set": {"candidate_name": ERASED_NAME, "candidate_email": ERASED_EMAIL}},
        )
        return ids

    async def application(self, application_id: str) -> ApplicationFacts | None:
        document = await self.applications.find_one({"_id": application_id})
        if document is None:
            return None
        return ApplicationFacts(
            application_id=application_id,
            candidate_id=document["candidate_id"],
            candidate_name=document.get("candidate_name", ERASED_NAME),
            candidate_email=document.get("candidate_email", ERASED_EMAIL),
            posting_id=document.get("posting_id", ""),
            posting_title=document.get("posting_title"),
            org=document.get("org", ""),
            contact_email=document.get("contact_email"),
        )

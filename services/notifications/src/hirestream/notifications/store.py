"""Storage of the notifications service.

Collections, their indexes, and what each index serves:
- `notifications`: every notification, one document per (event, recipient, channel), its id
  derived from those three so a redelivered event inserts nothing new. In-app ones form the
  inbox (`inbox_newest`: recipient, channel, created_at, _id); email and webhook ones carry
  their delivery state and attempts (`delivery_due`: the delivery worker's queue;
  `webhook_newest`: a webhook's delivery log); all carry an outbox, which holds a delivery's
  `notification.delivered` only when the broker was away as it ended (`outbox_due`).
- `preferences`: one document per recipient (`_id`).
- `alerts`: saved searches; `anchor` (see domain.AlertCriteria.anchor) selects the few alerts a
  posting can match; `candidate_newest` lists a candidate's alerts.
- `webhooks`: registrations; `subscribed` (event_types, org) finds those an event goes to.
- `announced_postings`, `applications_seen`: facts remembered from events (titles, contact
  addresses) that later events lack.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo import IndexModel, ReturnDocument, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from hirestream.notifications.domain import (
    MATCH_ALL,
    AlertCriteria,
    ApplicationFacts,
    NotificationView,
    Preferences,
    WebhookRegistration,
    posting_keys,
)
from hirestream.shared.events.envelope import CloudEvent
from hirestream.shared.events.notifications import Channel
from hirestream.shared.events.postings import PostingCreated
from hirestream.shared.events.types import utc_now
from hirestream.shared.messaging.outbox import (
    OUTBOX_INDEX,
    append_outbox_update,
    new_outbox_fields,
)
from hirestream.shared.privacy import ERASED_EMAIL, ERASED_NAME
from hirestream.shared.storage.group_commit import GroupCommit, Write, bulk_writer
from hirestream.shared.storage.mongo import CollectionIndexes, Document, object_id_or_none
from hirestream.shared.storage.pagination import after_cursor, newest_first, page_of

NOTIFICATIONS = "notifications"
PREFERENCES = "preferences"
ALERTS = "alerts"
WEBHOOKS = "webhooks"
ANNOUNCED_POSTINGS = "announced_postings"
APPLICATIONS_SEEN = "applications_seen"
DUE = "delivery_due_at"
DUPLICATE_KEY = 11000  # MongoDB's error code for a unique index refusing a write
NEWEST = newest_first("created_at")

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


async def _page(
    collection: AsyncCollection[Document], query: Document, limit: int, cursor: str | None
) -> tuple[list[Document], str | None]:
    if cursor:
        query = {**query, **after_cursor("created_at", cursor)}
    documents = await collection.find(query).sort(NEWEST).limit(limit + 1).to_list()
    return page_of(documents, limit, "created_at")


class NotificationStore:
    """Notifications, the inbox, and the delivery queue of email and webhook ones."""

    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self.collection = collection
        self._updates: GroupCommit[Write, None] = GroupCommit(bulk_writer(collection))

    async def create(self, documents: list[Document]) -> tuple[list[Document], list[Any]]:
        """Insert each notification once, all in one round trip. Returns the ones that were
        new, and the ids of those that existed already (a redelivered event): the unique `_id`
        refused them and they are left as they are."""
        if not documents:
            return [], []
        # No events go with them: a new email or webhook delivery has none yet, and an in-app
        # notification's event is published by the consumer itself (see consumers.py).
        stored = [{**document, **new_outbox_fields([])} for document in documents]
        try:
            # Unordered: one existing notification does not stop the others.
            await self.collection.insert_many(stored, ordered=False)
        except BulkWriteError as error:
            errors = error.details.get("writeErrors", [])
            existing = {e["index"] for e in errors if e.get("code") == DUPLICATE_KEY}
            if len(existing) < len(errors):
                raise
            made = [document for i, document in enumerate(stored) if i not in existing]
            return made, [stored[i]["_id"] for i in sorted(existing)]
        return stored, []

    async def stored(self, notification_ids: list[Any]) -> list[Document]:
        """The stored notifications among these ids (a redelivered event's), in that order."""
        found = await self.get_many(notification_ids)
        return [found[id_] for id_ in notification_ids if id_ in found]

    async def inbox(
        self, recipient: str, *, limit: int, cursor: str | None
    ) -> tuple[list[NotificationView], str | None]:
        query: Document = {"recipient": recipient, "channel": Channel.IN_APP.value}
        if cursor:
            query.update(after_cursor("created_at", cursor))
        documents = await self.collection.find(query).sort(NEWEST).limit(limit + 1).to_list()
        page, next_cursor = page_of(documents, limit, "created_at")
        return [
            NotificationView.model_validate({**doc, "notification_id": doc["_id"]}) for doc in page
        ], next_cursor

    async def mark_read(self, recipient: str, notification_id: str) -> NotificationView | None:
        document = await self.collection.find_one_and_update(
            {"_id": notification_id, "recipient": recipient, "channel": Channel.IN_APP.value},
            {"$set": {"read": True}},
            return_document=ReturnDocument.AFTER,
        )
        if document is None:
            return None
        return NotificationView.model_validate({**document, "notification_id": document["_id"]})

    async def claim_due(self, *, now: datetime, lease: timedelta, limit: int) -> list[Document]:
        """Take up to `limit` email or webhook deliveries that are due, for `lease`; fewer
        when other workers took some of those found first.

        One read for the batch, then a compare-and-set by `_id` on each due time read, rather
        than findAndModify with a sort per delivery: most polls find nothing, a read does not
        queue behind writes, and on FerretDB v1 each query that is not a lookup by `_id` reads
        the whole collection (bench/README.md)."""
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
        return [document for document in claimed if document is not None]

    async def get_many(self, notification_ids: list[Any]) -> dict[Any, Document]:
        """The notifications of these ids that exist, by id: one query for a batch."""
        found = self.collection.find({"_id": {"$in": notification_ids}})
        return {document["_id"]: document async for document in found}

    async def claim(
        self, notification_id: Any, *, due_at: datetime, until: datetime
    ) -> Document | None:
        """Lease one delivery until `until` if its due time is still `due_at` (nobody took it
        meanwhile, and it is not done); the delivery, or None."""
        return await self.collection.find_one_and_update(
            {"_id": notification_id, DUE: due_at},
            {"$set": {DUE: until}},
            return_document=ReturnDocument.AFTER,
        )

    async def record_attempt(
        self,
        notification_id: Any,
        attempt: Document,
        *,
        retry_at: datetime | None,
        final_status: str | None,
        events: list[CloudEvent[Any]],
    ) -> None:
        """One attempt's outcome: retry later, or the final status (with its event in the
        outbox when it could not be published). Attempts recorded at the same time leave in
        one command."""
        update: Document = {"$push": {"attempts": attempt}}
        if final_status is None:
            update["$set"] = {DUE: retry_at}
        else:
            update["$set"] = {DUE: None, "status": final_status}
            if events:
                outbox = append_outbox_update(events)
                update["$set"].update(outbox["$set"])
                update["$push"].update(outbox["$push"])
        await self._updates.submit(UpdateOne({"_id": notification_id}, update))

    async def anonymise_candidate(self, candidate_id: str, application_ids: list[str]) -> int:
        """Erasure: no address of the candidate, no name in anyone's notification about their
        applications, no personal data in stored webhook payloads. Idempotent."""
        changed = 0
        result = await self.collection.update_many(
            {"recipient": f"user:{candidate_id}", "email": {"$ne": None}},
            {"$set": {"email": None}},
        )
        changed += result.modified_count
        if not application_ids:
            return changed
        about = self.collection.find({"subject": {"$in": application_ids}})
        async for document in about:
            update: Document = {}
            if not document["recipient"].startswith("user:"):
                update["body"] = ANONYMOUS_BODY
                if document.get("email"):
                    update["email"] = document["email"]  # the employer's address stays
            if document.get("payload"):
                update["payload"] = anonymised_payload(document["payload"])
            if update and any(document.get(k) != v for k, v in update.items()):
                await self.collection.update_one({"_id": document["_id"]}, {"$set": update})
                changed += 1
        return changed

    async def deliveries(
        self, webhook_id: str, *, limit: int, cursor: str | None
    ) -> tuple[list[Document], str | None]:
        query: Document = {"webhook_id": webhook_id}
        if cursor:
            query.update(after_cursor("created_at", cursor))
        documents = await self.collection.find(query).sort(NEWEST).limit(limit + 1).to_list()
        return page_of(documents, limit, "created_at")


class PreferenceStore:
    """Stored as a list of {kind, channels}: event kinds contain dots, and a caller's words
    never become field names in our documents."""

    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self.collection = collection

    async def get(self, recipient: str) -> Preferences:
        document = await self.collection.find_one({"_id": recipient})
        return _preferences(document) if document else Preferences()

    async def get_many(self, recipients: list[str]) -> dict[str, Preferences]:
        found = self.collection.find({"_id": {"$in": recipients}})
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


class AlertStore:
    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self.collection = collection

    async def create(self, candidate_id: str, criteria: AlertCriteria) -> Document:
        document = {
            "_id": ObjectId(),
            "candidate_id": candidate_id,
            **criteria.model_dump(mode="json"),
            "anchor": criteria.anchor(),
            "created_at": utc_now(),
        }
        await self.collection.insert_one(document)
        return document

    async def of_candidate(
        self, candidate_id: str, *, limit: int, cursor: str | None
    ) -> tuple[list[Document], str | None]:
        return await _page(self.collection, {"candidate_id": candidate_id}, limit, cursor)

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

    async def matching(self, posting: PostingCreated) -> list[tuple[str, str | None]]:
        """(candidate id, alert email) of every alert the posting matches. Reads only the
        alerts anchored on one of the posting's keys (index `anchor`), then checks each
        alert's every criterion."""
        anchors = [*posting_keys(posting), MATCH_ALL]
        matches = []
        async for document in self.collection.find({"anchor": {"$in": anchors}}):
            criteria = AlertCriteria.model_validate(
                {name: document.get(name) for name in AlertCriteria.model_fields}
            )
            if criteria.matches(posting):
                matches.append((document["candidate_id"], criteria.email))
        return matches


class WebhookStore:
    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self.collection = collection

    async def create(
        self, owner: str, org: str | None, registration: WebhookRegistration
    ) -> Document:
        document = {
            "_id": ObjectId(),
            "owner": owner,
            "org": org,  # None for an admin's webhook: it receives every org's events
            **registration.model_dump(),
            "created_at": utc_now(),
        }
        await self.collection.insert_one(document)
        return document

    async def of_owner(
        self, owner: str, *, limit: int, cursor: str | None
    ) -> tuple[list[Document], str | None]:
        return await _page(self.collection, {"owner": owner}, limit, cursor)

    async def get(self, owner: str, webhook_id: str) -> Document | None:
        object_id = object_id_or_none(webhook_id)
        if object_id is None:
            return None
        return await self.collection.find_one({"_id": object_id, "owner": owner})

    async def by_id(self, webhook_id: str) -> Document | None:
        object_id = object_id_or_none(webhook_id)
        return None if object_id is None else await self.collection.find_one({"_id": object_id})

    async def delete(self, owner: str, webhook_id: str) -> bool:
        object_id = object_id_or_none(webhook_id)
        if object_id is None:
            return False
        result = await self.collection.delete_one({"_id": object_id, "owner": owner})
        return result.deleted_count == 1

    async def subscribed(self, kind: str, orgs: set[str]) -> list[Document]:
        """The webhooks that want `kind` from any of these orgs, and the admins' (org None)."""
        query = {"event_types": kind, "org": {"$in": [*sorted(orgs), None]}}
        return await self.collection.find(query).to_list()


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

    async def postings_by_id(self, posting_ids: set[str]) -> dict[str, Document]:
        found = self.postings.find({"_id": {"$in": sorted(posting_ids)}})
        return {document["_id"]: document async for document in found}

    async def remember_applications(self, facts: list[ApplicationFacts]) -> None:
        """Record each application's facts once; those already known stay as they are (an
        erasure may have blanked them since)."""
        documents = []
        for one in facts:
            fields = asdict(one)
            documents.append({"_id": fields.pop("application_id"), **fields})
        try:
            await self.applications.insert_many(documents, ordered=False)
        except BulkWriteError as error:
            errors = error.details.get("writeErrors", [])
            if any(e.get("code") != DUPLICATE_KEY for e in errors):
                raise

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
        # .get: FerretDB leaves out the None fields of a $setOnInsert upsert.
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

"""Storage of the applications service: applications (with their outbox) and the postings
read model.

Indexes of `applications` and what each serves:
- `one_per_candidate_and_posting` (candidate.candidate_id, posting_id), unique: the duplicate
  guard. Concurrent identical applications race on it, and exactly one insert wins;
- `candidate_newest` (candidate.candidate_id, submitted_at, _id): a candidate's list (an
  Idempotency-Key needs no index: it determines the application's `_id`,
  shared/web/idempotency.py);
- `org_newest` (org, posting_id, status, submitted_at): an employer's lists and filters;
- `newest` (submitted_at, _id): an admin's list;
- `outbox_due`: the outbox sweep.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bson import ObjectId
from cachetools import TTLCache
from pymongo import DESCENDING, IndexModel, InsertOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from hirestream.applications.domain import Application, PostingView
from hirestream.shared.events.applications import ApplicationStatus
from hirestream.shared.events.applications import ApplicationStatus as S
from hirestream.shared.events.envelope import CloudEvent
from hirestream.shared.messaging.outbox import (
    OUTBOX,
    OUTBOX_INDEX,
    append_outbox_update,
    new_outbox_fields,
)
from hirestream.shared.privacy import ERASED_EMAIL, ERASED_NAME
from hirestream.shared.storage.group_commit import GroupCommit, Write, bulk_writer
from hirestream.shared.storage.mongo import CollectionIndexes, Document, object_id_or_none
from hirestream.shared.storage.pagination import after_cursor, newest_first, page_of
from hirestream.shared.web.idempotency import derived_id

APPLICATIONS = "applications"
POSTINGS_VIEW = "postings_view"
ERASURE_REQUESTS = "erasure_requests"
FINAL_STATUSES = [status.value for status in (S.HIRED, S.REJECTED, S.WITHDRAWN)]

# What anonymising an application overwrites: everything that names or reaches the person.
# Kept: ids, posting, org, skills, match score, consent, statuses and their history, times.
ANONYMOUS_FIELDS: Document = {
    "candidate.name": ERASED_NAME,
    "candidate.email": ERASED_EMAIL,
    "resume_url": "",
    "cover_letter": None,
    "idempotency": None,  # holds a copy of the first response, personal data included
    "anonymised": True,
}
CANDIDATE_ID = "candidate.candidate_id"
NEWEST = newest_first("submitted_at")

INDEXES = [
    CollectionIndexes(
        APPLICATIONS,
        [
            IndexModel(
                [(CANDIDATE_ID, 1), ("posting_id", 1)],
                name="one_per_candidate_and_posting",
                unique=True,
            ),
            IndexModel([(CANDIDATE_ID, 1), *NEWEST], name="candidate_newest"),
            IndexModel(
                [("org", 1), ("posting_id", 1), ("status", 1), ("submitted_at", DESCENDING)],
                name="org_newest",
            ),
            IndexModel(NEWEST, name="newest"),
            IndexModel([("status", 1), ("updated_at", 1)], name="final_oldest"),  # retention
            IndexModel(OUTBOX_INDEX, name="outbox_due"),
        ],
    ),
    CollectionIndexes(
        ERASURE_REQUESTS,
        [
            IndexModel([("candidate_id", 1), ("requested_at", DESCENDING)], name="candidate"),
            IndexModel(OUTBOX_INDEX, name="outbox_due"),
        ],
    ),
    CollectionIndexes(POSTINGS_VIEW, [IndexModel([("org", 1)], name="org")]),
]

_INTERNAL = ("_id", "outbox", "outbox_due_at", "outbox_claim", "idempotency")


class DuplicateApplication(Exception):
    """The candidate already applied to this posting."""


def _to_application(document: Document) -> Application:
    fields = {name: value for name, value in document.items() if name not in _INTERNAL}
    return Application.model_validate({**fields, "application_id": str(document["_id"])})


class ApplicationStore:
    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self.collection = collection
        # New applications from concurrent requests are inserted together (group commit).
        self._inserts: GroupCommit[Write, None] = GroupCommit(bulk_writer(collection))

    @staticmethod
    def document_id(application_id: str) -> ObjectId:
        """The `_id` of the document an id names (what the outbox relay is told)."""
        return ObjectId(application_id)

    async def insert(
        self,
        application: Application,
        events: list[CloudEvent[Any]],
        *,
        idempotency: Document | None = None,
    ) -> list[Document]:
        """Store a new application, its events and (when the request carried an
        Idempotency-Key) the key, a hash of the request and the response given, all in one
        single-document write; returns its outbox, for the relay. DuplicateApplication if the
        candidate already applied."""
        document = {
            "_id": ObjectId(application.application_id),
            **application.model_dump(mode="python", exclude={"application_id"}),
            **new_outbox_fields(events),
            "idempotency": idempotency,
        }
        try:
            await self._inserts.submit(InsertOne(document))
        except DuplicateKeyError as error:
            raise DuplicateApplication(application.posting_id) from error
        outbox: list[Document] = document[OUTBOX]
        return outbox

    async def get(self, application_id: str) -> Application | None:
        object_id = object_id_or_none(application_id)
        if object_id is None:
            return None
        document = await self.collection.find_one({"_id": object_id})
        return _to_application(document) if document else None

    async def find_for(self, candidate_id: str, posting_id: str) -> Document | None:
        """The candidate's application to the posting, with its idempotency record."""
        return await self.collection.find_one(
            {CANDIDATE_ID: candidate_id, "posting_id": posting_id}
        )

    async def find_by_idempotency_key(self, candidate_id: str, key: str) -> Document | None:
        """The application an earlier request with this key created, if any (its
        `idempotency` is None once the application was anonymised)."""
        return await self.collection.find_one({"_id": derived_id(candidate_id, key)})

    async def replace_version(
        self, application: Application, *, expected_version: int, events: list[CloudEvent[Any]]
    ) -> bool:
        """Store the next version only if the stored one is still `expected_version`."""
        outbox = append_outbox_update(events)
        fields = application.model_dump(mode="python", exclude={"application_id"})
        result = await self.collection.update_one(
            {"_id": ObjectId(application.application_id), "version": expected_version},
            {"$set": {**fields, **outbox["$set"]}, "$push": outbox["$push"]},
        )
        return result.modified_count == 1

    async def anonymise_candidate(self, candidate_id: str) -> int:
        """Anonymise every application of a candidate (erasure); idempotent."""
        result = await self.collection.update_many(
            {CANDIDATE_ID: candidate_id}, {"$set": ANONYMOUS_FIELDS}
        )
        return result.matched_count

    async def anonymise_expired(self, cutoff: datetime) -> int:
        """Retention: anonymise the final applications last changed before `cutoff`, of
        candidates who have not applied again since (a new application restarts the clock).
        (MongoDB's $group with $max would find those candidates in one query; FerretDB v1
        lacks it, so the check is one indexed lookup per candidate.)"""
        expired = {"status": {"$in": FINAL_STATUSES}, "updated_at": {"$lt": cutoff}}
        not_yet = {"anonymised": {"$ne": True}}
        candidates = await self.collection.distinct(CANDIDATE_ID, {**expired, **not_yet})
        anonymised = 0
        for candidate_id in candidates:
            if await self.collection.find_one(
                {CANDIDATE_ID: candidate_id, "submitted_at": {"$gte": cutoff}}
            ):
                continue
            result = await self.collection.update_many(
                {**expired, **not_yet, CANDIDATE_ID: candidate_id},
                {"$set": ANONYMOUS_FIELDS},
            )
            anonymised += result.modified_count
        return anonymised

    async def list(
        self,
        *,
        candidate_id: str | None = None,
        org: str | None = None,
        posting_id: str | None = None,
        status: ApplicationStatus | None = None,
        limit: int,
        cursor: str | None,
    ) -> tuple[list[Application], str | None]:
        query: Document = {}
        if candidate_id is not None:
            query[CANDIDATE_ID] = candidate_id
        if org is not None:
            query["org"] = org
        if posting_id is not None:
            query["posting_id"] = posting_id
        if status is not None:
            query["status"] = status.value
        if cursor:
            query.update(after_cursor("submitted_at", cursor))
        documents = (
            await self.collection.find(query, projection={"outbox": 0})
            .sort(NEWEST)
            .limit(limit + 1)
            .to_list()
        )
        page, next_cursor = page_of(documents, limit, "submitted_at")
        return [_to_application(document) for document in page], next_cursor


# How long a posting read for an application may be reused without reading it again.
POSTING_CACHE_TTL_S = 2.0
POSTING_CACHE_SIZE = 10_000


class PostingReadModel:
    """Postings as known from events, keyed by posting id and guarded by version.

    Every application reads its posting, so the postings found are kept in memory for
    `POSTING_CACHE_TTL_S`: under load most applications go to a few postings, and the read
    was the route's largest cost after its two writes (bench/README.md). A stored version
    replaces this process's copy at once; another replica's copy may be that much older.
    That adds at most two seconds to a view that already follows the postings service by
    an event's delay. Unknown postings are not kept: a new one is found as soon as stored.
    """

    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self.collection = collection
        self._recent: TTLCache[str, PostingView] = TTLCache(
            maxsize=POSTING_CACHE_SIZE, ttl=POSTING_CACHE_TTL_S
        )
        self._writes = 0  # versions stored by this process so far

    async def apply(self, view: PostingView) -> bool:
        """Store `view` unless a version as new or newer is already held; True if stored.

        One atomic upsert: the filter matches only an older version. When the document holds
        this version or a newer one, the upsert tries to insert the same `_id` and the unique
        `_id` index refuses it, which is how "already newer" is detected. So events in any
        order, or twice, leave the newest version.
        """
        # Neither a read that began before the write nor one that ended during it may leave
        # its copy behind: the count turns away the first, the pop after the write the second.
        self._writes += 1
        try:
            await self.collection.update_one(
                {"_id": view.posting_id, "version": {"$lt": view.version}},
                {"$set": view.fields_to_store()},
                upsert=True,
            )
        except DuplicateKeyError:
            return False
        finally:
            self._writes += 1
            self._recent.pop(view.posting_id, None)
        return True

    async def get(self, posting_id: str) -> PostingView | None:
        if (known := self._recent.get(posting_id)) is not None:
            return known
        writes_before = self._writes
        document = await self.collection.find_one({"_id": posting_id})
        if document is None:
            return None
        view = PostingView.model_validate({**document, "posting_id": document["_id"]})
        if self._writes == writes_before:  # else the read may predate a newer version
            self._recent[posting_id] = view
        return view


class ErasureRequestStore:
    """Erasure requests and the confirmations of each service."""

    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self.collection = collection

    async def create(self, request: Document, events: list[CloudEvent[Any]]) -> None:
        await self.collection.insert_one(
            {**request, "confirmations": [], **new_outbox_fields(events)}
        )

    async def latest_for(self, candidate_id: str) -> Document | None:
        return await self.collection.find_one(
            {"candidate_id": candidate_id}, sort=[("requested_at", DESCENDING)]
        )

    async def confirm(self, request_id: str, confirmation: Document) -> None:
        """Add one service's confirmation; a redelivered one is the same value, and
        $addToSet adds it once."""
        await self.collection.update_one(
            {"_id": request_id}, {"$addToSet": {"confirmations": confirmation}}
        )

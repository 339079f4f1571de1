"""Storage of the applications service: applications (each with its outbox), erasure requests,
the postings read model, and the pipeline projection.

Indexes of `applications` and what each serves:
- `one_per_candidate_and_posting` (candidate.candidate_id, posting_id), unique: the duplicate
  guard. Concurrent identical applications race on it, and exactly one insert wins;
- `candidate_newest` (candidate.candidate_id, submitted_at, _id): a candidate's list (an
  Idempotency-Key needs no index: it determines the application's id);
- `org_newest` (org, posting_id, status, submitted_at): an employer's lists and filters;
- `newest` (submitted_at, _id): an admin's list;
- `posting_best_match` (posting_id, match.score, _id): a posting's applications best match
  first (triage);
- `final_oldest` (status, updated_at): retention;
- `outbox_due`: the outbox sweep.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from cachetools import TTLCache
from pymongo import DESCENDING, IndexModel, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, DuplicateKeyError

from hirestream.applications.domain import (
    Application,
    ApplicationOrder,
    Confirmation,
    ErasureRequest,
    PostingView,
    Step,
)
from hirestream.shared.events.applications import ApplicationStatus
from hirestream.shared.events.applications import ApplicationStatus as S
from hirestream.shared.messaging.outbox import (
    OUTBOX_FIELDS,
    OUTBOX_INDEX,
    OutboxEntry,
    new_outbox_fields,
)
from hirestream.shared.privacy import ERASED_EMAIL, ERASED_NAME
from hirestream.shared.service_layer.unit_of_work import (
    IdempotencyRecord,
)
from hirestream.shared.storage.aggregates import NOT_RETURNED, AggregateCollection
from hirestream.shared.storage.mongo import (
    DUPLICATE_KEY,
    CollectionIndexes,
    Document,
    insert_new,
)
from hirestream.shared.storage.pagination import (
    Page,
    after_cursor,
    after_number,
    newest_first,
    number_cursor_after,
    page_of,
)

APPLICATIONS = "applications"
POSTINGS_VIEW = "postings_view"
ERASURE_REQUESTS = "erasure_requests"
PIPELINE = "pipeline"
FINAL_STATUSES = [status.value for status in (S.HIRED, S.REJECTED, S.WITHDRAWN)]

# What anonymising an application overwrites: everything that names or reaches the person.
# Kept: ids, posting, org, skills, match score, consent, statuses and their history, times.
ANONYMOUS_FIELDS: Document = {
    "candidate.name": ERASED_NAME,
    "candidate.email": ERASED_EMAIL,
    "resume_url": "",
    "cover_letter": None,
    "idempotency": None,  # holds the first response, personal data included
    "anonymised": True,
}
CANDIDATE_ID = "candidate.candidate_id"
NEWEST = newest_first("submitted_at")
MATCH_SCORE = "match.score"
BEST_MATCH = newest_first(MATCH_SCORE)  # highest first, ties by _id

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
            IndexModel([("posting_id", 1), *BEST_MATCH], name="posting_best_match"),
            IndexModel([("status", 1), ("updated_at", 1)], name="final_oldest"),
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
    CollectionIndexes(PIPELINE, [IndexModel([("posting_id", 1)], name="posting")]),
]


async def _first(
    collection: AsyncCollection[Document], query: Document, order: list[tuple[str, int]], limit: int
) -> list[Document]:
    """The first `limit` documents that match `query`, in `order`."""
    return await collection.find(query, projection=NOT_RETURNED).sort(order).limit(limit).to_list()


class ApplicationStore(AggregateCollection[Application]):
    def __init__(self, collection: AsyncCollection[Document]) -> None:
        # New applications from concurrent requests are inserted together (group commit).
        super().__init__(collection, Application, id_field="application_id", group_inserts=True)

    async def find_for(self, candidate_id: str, posting_id: str) -> Application | None:
        """The candidate's application to the posting, if any."""
        document = await self.collection.find_one(
            {CANDIDATE_ID: candidate_id, "posting_id": posting_id}, projection=NOT_RETURNED
        )
        return self.load(document) if document else None

    async def list(
        self,
        *,
        candidate_id: str | None = None,
        org: str | None = None,
        posting_id: str | None = None,
        status: ApplicationStatus | None = None,
        order: ApplicationOrder = ApplicationOrder.NEWEST,
        limit: int,
        cursor: str | None,
    ) -> Page[Application]:
        query: Document = {}
        if candidate_id is not None:
            query[CANDIDATE_ID] = candidate_id
        if org is not None:
            query["org"] = org
        if posting_id is not None:
            query["posting_id"] = posting_id
        if status is not None:
            query["status"] = status.value
        if order is ApplicationOrder.BEST_MATCH:
            if cursor:
                query.update(after_number(MATCH_SCORE, cursor))
            documents = await _first(self.collection, query, BEST_MATCH, limit + 1)
            return page_of(documents, limit, MATCH_SCORE, self.load, cursor=number_cursor_after)
        if cursor:
            query.update(after_cursor("submitted_at", cursor))
        documents = await _first(self.collection, query, NEWEST, limit + 1)
        return page_of(documents, limit, "submitted_at", self.load)

    async def anonymise_candidate(self, candidate_id: str) -> int:
        """Anonymise every application of a candidate (erasure); idempotent."""
        result = await self.collection.update_many(
            {CANDIDATE_ID: candidate_id}, {"$set": ANONYMOUS_FIELDS}
        )
        return result.matched_count

    async def anonymise_expired(self, cutoff: datetime) -> int:
        """Retention: anonymise the final applications last changed before `cutoff`, of
        candidates who have not applied again since (a new application restarts the clock).
        One indexed lookup per such candidate: `$group` with `$max` would find them in one
        query, but needs more of the aggregation pipeline than the local server offers."""
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


# How long a posting read for an application may be reused without reading it again.
POSTING_CACHE_TTL_S = 2.0
POSTING_CACHE_SIZE = 10_000


class PostingReadModel:
    """Postings as known from events, keyed by posting id and guarded by version.

    Every application reads its posting, and under load most applications go to a few
    postings, so the postings found are kept in memory for `POSTING_CACHE_TTL_S`. A stored
    version replaces this process's copy at once; another replica's copy may be that much
    older, which adds at most two seconds to a view that already follows the postings service
    by an event's delay. Unknown postings are not kept: a new one is found as soon as stored.
    """

    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self.collection = collection
        self._recent: TTLCache[str, PostingView] = TTLCache(
            maxsize=POSTING_CACHE_SIZE, ttl=POSTING_CACHE_TTL_S
        )
        self._writes = 0  # versions stored by this process so far

    async def apply(self, view: PostingView) -> bool:
        """Store `view` unless a version as new or newer is already held; True if stored.

        One atomic upsert whose filter matches only an older version: when the document holds
        this version or a newer one, the upsert tries to insert the same `_id` and the unique
        `_id` index refuses it. So events in any order, or twice, leave the newest version.
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

    async def clear(self) -> None:
        """Forget every posting (before a rebuild from scratch)."""
        await self.collection.delete_many({})


def _owner(step: Step) -> Document:
    return {"posting_id": step.posting_id, "org": step.org}


def _key(step: Step) -> str:
    return f"v{step.version}"


def _entry(step: Step) -> Document:
    return {"status": step.status.value, "at": step.at}


class PipelineProjection:
    """Each application's journey through the statuses, from `application.*` events: one
    document per application, `{posting_id, org, steps: {"v<version>": {status, at}}}`.

    An event sets the step of its version, the same value however often it arrives and in
    whichever order the two topics deliver: recording is idempotent by (application, version)
    and needs no read. A posting's pipeline is computed from its documents when asked for.
    """

    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self.collection = collection

    async def record(self, steps: Sequence[Step]) -> None:
        """A submission (version 1) starts its application's document: an insert, which costs
        the server less than an upsert's lookup. A later step, or a submission whose document
        a redelivery or an earlier-arriving status change made already, is set into it."""
        submissions = [step for step in steps if step.version == 1]
        to_set = [step for step in steps if step.version != 1]
        to_set += await self._insert(submissions)
        if to_set:
            await self._set(to_set)

    async def _insert(self, steps: list[Step]) -> list[Step]:
        """Insert a document per step; returns the steps whose document exists already."""
        documents = [
            {"_id": step.application_id, **_owner(step), "steps": {_key(step): _entry(step)}}
            for step in steps
        ]
        return [steps[index] for index in sorted(await insert_new(self.collection, documents))]

    async def _set(self, steps: list[Step]) -> None:
        writes = [
            UpdateOne(
                {"_id": step.application_id},
                {"$set": {**_owner(step), f"steps.{_key(step)}": _entry(step)}},
                upsert=True,
            )
            for step in steps
        ]
        try:
            await self.collection.bulk_write(writes, ordered=False)
        except BulkWriteError as error:
            if any(e.get("code") != DUPLICATE_KEY for e in error.details.get("writeErrors", [])):
                raise
            # A duplicate key from an upsert: two upserts of one new application raced, and
            # the second finds it now.
            await self.collection.bulk_write(writes, ordered=False)

    async def journeys(self, posting_id: str) -> list[list[Step]]:
        """The known steps of each application to the posting."""
        documents = self.collection.find({"posting_id": posting_id})
        return [
            [
                Step(
                    application_id=document["_id"],
                    posting_id=document["posting_id"],
                    org=document["org"],
                    version=int(key.removeprefix("v")),
                    status=step["status"],
                    at=step["at"],
                )
                for key, step in (document.get("steps") or {}).items()
            ]
            async for document in documents
        ]

    async def clear(self) -> None:
        """Forget every journey (before a rebuild from scratch)."""
        await self.collection.delete_many({})


class ErasureRequestStore:
    """Erasure requests, each with the confirmations of every service."""

    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self.collection = collection

    async def insert(
        self,
        request: ErasureRequest,
        outbox: Sequence[OutboxEntry],
        idempotency: IdempotencyRecord | None,
    ) -> str:
        document = {
            "_id": request.request_id,
            **request.model_dump(mode="python", exclude={"request_id"}),
            **new_outbox_fields(outbox),
        }
        await self.collection.insert_one(document)
        return request.request_id

    async def update(
        self, request: ErasureRequest, outbox: Sequence[OutboxEntry], expected_version: int
    ) -> Any:
        raise NotImplementedError("requests change only by confirmations (confirm)")

    async def latest_for(self, candidate_id: str) -> ErasureRequest | None:
        document = await self.collection.find_one(
            {"candidate_id": candidate_id},
            sort=[("requested_at", DESCENDING)],
            projection=dict.fromkeys(OUTBOX_FIELDS, 0),
        )
        if document is None:
            return None
        return ErasureRequest.model_validate({**document, "request_id": document["_id"]})

    async def confirm(self, request_id: str, confirmation: Confirmation) -> None:
        """Add one service's confirmation; a redelivered one is the same value, and $addToSet
        adds it once."""
        await self.collection.update_one(
            {"_id": request_id},
            {"$addToSet": {"confirmations": confirmation.model_dump(mode="python")}},
        )

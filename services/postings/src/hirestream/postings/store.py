"""PostingStore: postings in MongoDB, each document with its pending events (the outbox).

Indexes, and the filters of `GET /postings` each serves. Every one ends in the newest-first
order, so a page is read straight off the index:

- `status_newest` (status, created_at, _id): the default list and cursor pages; `workplace`,
  `seniority`, `employment_type` and `min_salary` are residual filters on it (few values each:
  an index of their own would rarely be more selective);
- `tokens_newest` (search_tokens, created_at): `q`, a multikey index of normalised words (not
  `$text`, which cannot be combined well with a newest-first sort);
- `skills_newest` (skills, created_at): `skills`;
- `place_newest` (location.country, city_key, created_at): `country`, and `country` + `city`;
- `city_newest` (city_key, created_at): `city` alone;
- `org_newest` (org, status, created_at): `org`, an employer's own postings;
- `outbox_due` (outbox_due_at): the outbox sweep.
"""

from __future__ import annotations

from collections.abc import Sequence

from bson import ObjectId
from pymongo import DESCENDING, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from hirestream.postings.domain import Posting, PostingSearch, search_tokens
from hirestream.shared.messaging.outbox import (
    OUTBOX_FIELDS,
    OUTBOX_INDEX,
    OutboxEntry,
    append_outbox_update,
    new_outbox_fields,
)
from hirestream.shared.service_layer.unit_of_work import (
    AlreadyStored,
    IdempotencyRecord,
    StaleVersion,
    StoredRequest,
)
from hirestream.shared.storage.idempotency import idempotency_fields, stored_request_of
from hirestream.shared.storage.mongo import (
    CollectionIndexes,
    Document,
    object_id_or_none,
)
from hirestream.shared.storage.pagination import Page, after_cursor, newest_first, page_of

COLLECTION = "postings"
NEWEST = newest_first("created_at")

INDEXES = CollectionIndexes(
    COLLECTION,
    [
        IndexModel([("status", 1), *NEWEST], name="status_newest"),
        IndexModel([("search_tokens", 1), ("created_at", DESCENDING)], name="tokens_newest"),
        IndexModel([("skills", 1), ("created_at", DESCENDING)], name="skills_newest"),
        IndexModel(
            [("location.country", 1), ("city_key", 1), ("created_at", DESCENDING)],
            name="place_newest",
        ),
        IndexModel([("city_key", 1), ("created_at", DESCENDING)], name="city_newest"),
        IndexModel([("org", 1), ("status", 1), ("created_at", DESCENDING)], name="org_newest"),
        IndexModel(OUTBOX_INDEX, name="outbox_due"),
    ],
)

# What the store derives for search and never returns.
SEARCH_FIELDS = ("search_tokens", "city_key")
NOT_RETURNED = dict.fromkeys((*OUTBOX_FIELDS, *SEARCH_FIELDS, "idempotency"), 0)


def _fields(posting: Posting) -> Document:
    """A posting's document fields, with what search needs derived from it."""
    return {
        **posting.model_dump(mode="python", exclude={"posting_id"}),
        "search_tokens": search_tokens(posting),
        "city_key": posting.location.city.casefold(),
    }


def _posting(document: Document) -> Posting:
    return Posting.model_validate({**document, "posting_id": str(document["_id"])})


class PostingStore:
    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self.collection = collection

    async def insert(
        self,
        posting: Posting,
        outbox: Sequence[OutboxEntry],
        idempotency: IdempotencyRecord | None,
    ) -> ObjectId:
        doc_id = ObjectId(posting.posting_id)
        document = {
            "_id": doc_id,
            **_fields(posting),
            **new_outbox_fields(outbox),
            **idempotency_fields(idempotency),
        }
        try:
            await self.collection.insert_one(document)
        except DuplicateKeyError as error:
            raise AlreadyStored(posting.posting_id) from error
        return doc_id

    async def update(
        self, posting: Posting, outbox: Sequence[OutboxEntry], expected_version: int
    ) -> ObjectId:
        """Optimistic concurrency: the write matches only the version the change was made from."""
        doc_id = ObjectId(posting.posting_id)
        appended = append_outbox_update(outbox)
        result = await self.collection.update_one(
            {"_id": doc_id, "version": expected_version},
            {"$set": {**_fields(posting), **appended["$set"]}, "$push": appended["$push"]},
        )
        if result.modified_count != 1:
            raise StaleVersion(posting.posting_id)
        return doc_id

    async def get(self, posting_id: str) -> Posting | None:
        object_id = object_id_or_none(posting_id)
        if object_id is None:
            return None
        document = await self.collection.find_one({"_id": object_id}, projection=NOT_RETURNED)
        return _posting(document) if document else None

    async def stored_request(self, posting_id: str) -> StoredRequest | None:
        document = await self.collection.find_one(
            {"_id": ObjectId(posting_id)}, projection={"idempotency": 1}
        )
        return stored_request_of(document)

    async def search(
        self, search: PostingSearch, *, limit: int, cursor: str | None
    ) -> Page[Posting]:
        """One page, newest first, and the cursor of the next page (None on the last)."""
        query = _query(search)
        if cursor:
            query.update(after_cursor("created_at", cursor))
        documents = (
            await self.collection.find(query, projection=NOT_RETURNED)
            .sort(NEWEST)
            .limit(limit + 1)
            .to_list()
        )
        return page_of(documents, limit, "created_at", _posting)


def _query(search: PostingSearch) -> Document:
    query: Document = {"status": search.status.value}
    if search.q:
        query["search_tokens"] = {"$all": search.q}
    if search.skills:
        query["skills"] = {"$all": search.skills}
    if search.city:
        query["city_key"] = search.city.casefold()
    if search.country:
        query["location.country"] = search.country.upper()
    for name in ("workplace", "seniority", "employment_type", "org"):
        value = getattr(search, name)
        if value is not None:
            query[name] = str(value)
    if search.min_salary is not None:
        query["salary.max"] = {"$gte": search.min_salary}
    return query

"""PostingStore: MongoDB documents <-> `Posting`, with the outbox in the same document.

Indexes, and the filters of `GET /postings` each serves. Every one ends in the newest-first
order, so a page is read straight off the index:

- `status_newest` (status, created_at, _id): the default list and cursor pages; `workplace`,
  `seniority`, `employment_type` and `min_salary` are residual filters on it (few values each:
  an index of their own would rarely be more selective);
- `tokens_newest` (search_tokens, created_at): `q`, a multikey index of normalised words (no
  `$text`: FerretDB lacks it and it cannot be combined with a newest-first sort well);
- `skills_newest` (skills, created_at): `skills`;
- `place_newest` (location.country, city_key, created_at): `country`, and `country` + `city`;
- `city_newest` (city_key, created_at): `city` alone;
- `org_newest` (org, status, created_at): `org`, an employer's own postings;
- `outbox_due` (outbox_due_at): the outbox sweep.

MongoDB's planner picks the most selective of these for a query; FerretDB v1 on SQLite uses
indexes less, which is one more reason the benchmarks say which server they ran on.
"""

from __future__ import annotations

from typing import Any

from bson import ObjectId
from pymongo import DESCENDING, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from hirestream.postings.domain import Posting, PostingSearch, search_tokens
from hirestream.shared.events.envelope import CloudEvent
from hirestream.shared.messaging.outbox import (
    OUTBOX,
    OUTBOX_INDEX,
    append_outbox_update,
    new_outbox_fields,
)
from hirestream.shared.storage.mongo import CollectionIndexes, Document, object_id_or_none
from hirestream.shared.storage.pagination import after_cursor, newest_first, page_of
from hirestream.shared.web.idempotency import derived_id

COLLECTION = "postings"
NEWEST = newest_first("created_at")

INDEXES = [
    CollectionIndexes(
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
]

# Fields that are the store's own business and never leave it.
_INTERNAL = (
    "_id",
    "outbox",
    "outbox_due_at",
    "outbox_claim",
    "search_tokens",
    "city_key",
    "idempotency",
)


class PostingExists(Exception):
    """A posting with this id is stored already: a retry of a request with an Idempotency-Key."""


def _stored_fields(posting: Posting) -> Document:
    """The document fields of a posting, with what search needs derived from it."""
    return {
        **posting.model_dump(mode="python", exclude={"posting_id"}),
        "search_tokens": search_tokens(posting),
        "city_key": posting.location.city.casefold(),
    }


class PostingStore:
    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self.collection = collection

    @staticmethod
    def document_id(posting_id: str) -> ObjectId:
        """The `_id` of the document an id names (what the outbox relay is told)."""
        return ObjectId(posting_id)

    async def insert(
        self,
        posting: Posting,
        events: list[CloudEvent[Any]],
        *,
        idempotency: Document | None = None,
    ) -> list[Document]:
        """Store a new posting, its events and (when the request carried an Idempotency-Key)
        the first response, in one single-document write (the outbox); returns the outbox,
        for the relay. PostingExists if its id is taken (a retry with the same key)."""
        document = {
            "_id": ObjectId(posting.posting_id),
            **_stored_fields(posting),
            **new_outbox_fields(events),
            "idempotency": idempotency,
        }
        try:
            await self.collection.insert_one(document)
        except DuplicateKeyError as error:
            raise PostingExists(posting.posting_id) from error
        outbox: list[Document] = document[OUTBOX]
        return outbox

    async def response_for_key(self, employer_id: str, idempotency_key: str) -> Document | None:
        """The first response to this employer's request with this key, if one is stored."""
        document = await self.collection.find_one(
            {"_id": derived_id(employer_id, idempotency_key)}, projection={"idempotency": 1}
        )
        return document.get("idempotency") if document else None

    async def replace_version(
        self, posting: Posting, *, expected_version: int, events: list[CloudEvent[Any]]
    ) -> bool:
        """Store the next version of a posting and its events, only if the stored version is
        still `expected_version` (optimistic concurrency). False if someone was quicker."""
        outbox = append_outbox_update(events)
        result = await self.collection.update_one(
            {"_id": ObjectId(posting.posting_id), "version": expected_version},
            {"$set": {**_stored_fields(posting), **outbox["$set"]}, "$push": outbox["$push"]},
        )
        return result.modified_count == 1

    async def get(self, posting_id: str) -> Posting | None:
        object_id = object_id_or_none(posting_id)
        if object_id is None:
            return None
        document = await self.collection.find_one({"_id": object_id})
        return _to_posting(document) if document else None

    async def search(
        self, search: PostingSearch, *, limit: int, cursor: str | None
    ) -> tuple[list[Posting], str | None]:
        """One page, newest first, and the cursor of the next page (None on the last)."""
        query = _query(search)
        if cursor:
            query.update(after_cursor("created_at", cursor))
        documents = (
            await self.collection.find(
                query, projection={"outbox": 0, "search_tokens": 0, "idempotency": 0}
            )
            .sort(NEWEST)
            .limit(limit + 1)
            .to_list()
        )
        page, next_cursor = page_of(documents, limit, "created_at")
        return [_to_posting(document) for document in page], next_cursor


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


def _to_posting(document: Document) -> Posting:
    fields = {name: value for name, value in document.items() if name not in _INTERNAL}
    return Posting.model_validate({**fields, "posting_id": str(document["_id"])})

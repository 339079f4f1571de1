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
- `expiring` (status, expires_at): the expiry job's open postings past their end;
- `outbox_due` (outbox_due_at): the outbox sweep.
"""

from __future__ import annotations

from datetime import datetime

from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.asynchronous.collection import AsyncCollection

from hirestream.postings.domain import Posting, PostingSearch, search_tokens
from hirestream.shared.events.postings import PostingStatus
from hirestream.shared.messaging.outbox import OUTBOX_FIELDS, OUTBOX_INDEX
from hirestream.shared.storage.aggregates import AggregateCollection
from hirestream.shared.storage.mongo import CollectionIndexes, Document
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
        IndexModel([("status", 1), ("expires_at", ASCENDING)], name="expiring"),
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


class PostingStore(AggregateCollection[Posting]):
    def __init__(self, collection: AsyncCollection[Document]) -> None:
        super().__init__(collection, Posting, id_field="posting_id", fields=_fields)

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
        return page_of(documents, limit, "created_at", self.load)

    async def expired(self, now: datetime, *, limit: int) -> list[Posting]:
        """Open postings whose end is at or before `now`, earliest end first. Postings without
        an end (from before expiry) never match: `$lte` on a date skips a missing or null one."""
        query = {"status": PostingStatus.OPEN.value, "expires_at": {"$lte": now}}
        documents = (
            await self.collection.find(query, projection=NOT_RETURNED)
            .sort("expires_at", ASCENDING)
            .limit(limit)
            .to_list()
        )
        return [self.load(document) for document in documents]


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

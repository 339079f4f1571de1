"""Storage of the notifications service: announced postings (inbox and alerts come later)."""

from __future__ import annotations

from pymongo.asynchronous.collection import AsyncCollection

from hirestream.notifications.domain import AnnouncedPosting
from hirestream.shared.storage.mongo import CollectionIndexes, Document

ANNOUNCED_POSTINGS = "announced_postings"

INDEXES: list[CollectionIndexes] = []


class AnnouncedPostingStore:
    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self.collection = collection

    async def record(self, posting: AnnouncedPosting) -> bool:
        """Record the announcement once; a redelivered event changes nothing. True if new."""
        result = await self.collection.update_one(
            {"_id": posting.posting_id},
            {"$setOnInsert": posting.model_dump(exclude={"posting_id"})},
            upsert=True,
        )
        return result.upserted_id is not None

    async def get(self, posting_id: str) -> AnnouncedPosting | None:
        document = await self.collection.find_one({"_id": posting_id})
        if document is None:
            return None
        return AnnouncedPosting.model_validate({**document, "posting_id": document["_id"]})

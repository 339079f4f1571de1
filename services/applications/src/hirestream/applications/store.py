"""Storage of the applications service: the postings read model (applications come later)."""

from __future__ import annotations

from pymongo import IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from hirestream.applications.domain import PostingView
from hirestream.shared.storage.mongo import CollectionIndexes, Document

POSTINGS_VIEW = "postings_view"

INDEXES = [CollectionIndexes(POSTINGS_VIEW, [IndexModel([("org", 1)], name="org")])]


class PostingReadModel:
    """Postings as known from events, keyed by posting id and guarded by version."""

    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self.collection = collection

    async def apply(self, view: PostingView) -> bool:
        """Store `view` unless a version as new or newer is already held; True if stored.

        One atomic upsert: the filter matches only an older version. When the document holds
        this version or a newer one, the upsert tries to insert the same `_id` and the unique
        `_id` index refuses it, which is how "already newer" is detected. So events in any
        order, or twice, leave the newest version.
        """
        try:
            await self.collection.update_one(
                {"_id": view.posting_id, "version": {"$lt": view.version}},
                {"$set": view.fields_to_store()},
                upsert=True,
            )
        except DuplicateKeyError:
            return False
        return True

    async def get(self, posting_id: str) -> PostingView | None:
        document = await self.collection.find_one({"_id": posting_id})
        if document is None:
            return None
        return PostingView.model_validate({**document, "posting_id": document["_id"]})

"""PostingStore: MongoDB documents <-> `Posting`, with the outbox in the same document."""

from __future__ import annotations

from typing import Any

from bson import ObjectId
from bson.errors import InvalidId
from pymongo import IndexModel
from pymongo.asynchronous.collection import AsyncCollection

from hirestream.postings.domain import Posting
from hirestream.shared.events.envelope import CloudEvent
from hirestream.shared.messaging.outbox import OUTBOX_INDEX, new_outbox_fields
from hirestream.shared.storage.mongo import CollectionIndexes, Document

COLLECTION = "postings"

INDEXES = [
    CollectionIndexes(
        COLLECTION,
        [
            IndexModel(OUTBOX_INDEX, name="outbox_due"),  # the outbox sweep
        ],
    )
]

# Internal fields never leave the store.
_INTERNAL = ("_id", "outbox", "outbox_due_at", "outbox_claim")


def _object_id(posting_id: str) -> ObjectId | None:
    try:
        return ObjectId(posting_id)
    except (InvalidId, TypeError):
        return None


class PostingStore:
    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self.collection = collection

    @staticmethod
    def new_id() -> str:
        return str(ObjectId())

    async def insert(self, posting: Posting, events: list[CloudEvent[Any]]) -> None:
        """Store a new posting and its events in one single-document write (the outbox)."""
        document = {
            "_id": ObjectId(posting.posting_id),
            **posting.model_dump(mode="python", exclude={"posting_id"}),
            **new_outbox_fields(events),
        }
        await self.collection.insert_one(document)

    async def get(self, posting_id: str) -> Posting | None:
        object_id = _object_id(posting_id)
        if object_id is None:
            return None
        document = await self.collection.find_one({"_id": object_id})
        return _to_posting(document) if document else None


def _to_posting(document: Document) -> Posting:
    fields = {name: value for name, value in document.items() if name not in _INTERNAL}
    return Posting.model_validate({**fields, "posting_id": str(document["_id"])})

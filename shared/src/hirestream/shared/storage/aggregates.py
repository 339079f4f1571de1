"""Aggregates of one kind in a MongoDB collection, one document each, with the aggregate's pending
events (its outbox) and the Idempotency-Key record of the request that created it: the
`AggregateStore` the unit of work writes through. A service's store extends it with its
queries."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from bson import ObjectId
from pydantic import BaseModel
from pymongo import InsertOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from hirestream.shared.messaging.outbox import (
    OUTBOX_FIELDS,
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
from hirestream.shared.storage.group_commit import GroupCommit, Write, bulk_writer
from hirestream.shared.storage.idempotency import idempotency_fields, stored_request_of
from hirestream.shared.storage.mongo import Document, object_id_or_none

A = TypeVar("A", bound=BaseModel)

# What only the store and the relay read: never part of an aggregate.
NOT_RETURNED = dict.fromkeys((*OUTBOX_FIELDS, "idempotency"), 0)


class AggregateCollection(Generic[A]):
    """`id_field` names the aggregate's id (a 24-hex ObjectId, stored as `_id`); `fields` gives
    a document's other fields (derived ones included); `version` is checked on update.
    `group_inserts`: concurrent inserts leave together in one command (group commit)."""

    def __init__(
        self,
        collection: AsyncCollection[Document],
        model: type[A],
        *,
        id_field: str,
        fields: Callable[[A], Document] | None = None,
        group_inserts: bool = False,
    ) -> None:
        self.collection = collection
        self._model = model
        self._id_field = id_field
        self._fields = fields or (lambda aggregate: aggregate.model_dump(exclude={id_field}))
        self._inserts: GroupCommit[Write, None] | None = (
            GroupCommit(bulk_writer(collection)) if group_inserts else None
        )

    def load(self, document: Document) -> A:
        return self._model.model_validate({**document, self._id_field: str(document["_id"])})

    def _id(self, aggregate: A) -> ObjectId:
        return ObjectId(getattr(aggregate, self._id_field))

    async def insert(
        self, aggregate: A, outbox: Sequence[OutboxEntry], idempotency: IdempotencyRecord | None
    ) -> ObjectId:
        """AlreadyStored when the id, or another unique key of the collection, is taken."""
        doc_id = self._id(aggregate)
        document = {
            "_id": doc_id,
            **self._fields(aggregate),
            **new_outbox_fields(outbox),
            **idempotency_fields(idempotency),
        }
        try:
            if self._inserts is None:
                await self.collection.insert_one(document)
            else:
                await self._inserts.submit(InsertOne(document))
        except DuplicateKeyError as error:
            raise AlreadyStored(str(doc_id)) from error
        return doc_id

    async def update(
        self, aggregate: A, outbox: Sequence[OutboxEntry], expected_version: int
    ) -> ObjectId:
        """Optimistic concurrency: the write matches only the version the change was made from."""
        doc_id = self._id(aggregate)
        appended = append_outbox_update(outbox)
        result = await self.collection.update_one(
            {"_id": doc_id, "version": expected_version},
            {"$set": {**self._fields(aggregate), **appended["$set"]}, "$push": appended["$push"]},
        )
        if result.modified_count != 1:
            raise StaleVersion(str(doc_id))
        return doc_id

    async def get(self, aggregate_id: str) -> A | None:
        object_id = object_id_or_none(aggregate_id)
        if object_id is None:
            return None
        document = await self.collection.find_one({"_id": object_id}, projection=NOT_RETURNED)
        return self.load(document) if document else None

    async def stored_request(self, aggregate_id: str) -> StoredRequest | None:
        document = await self.collection.find_one(
            {"_id": ObjectId(aggregate_id)}, projection={"idempotency": 1}
        )
        return stored_request_of(document)

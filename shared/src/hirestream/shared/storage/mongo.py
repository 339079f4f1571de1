"""MongoDB client set-up with PyMongo's async API (Motor, its predecessor, is retired).

Nothing the services do needs a replica set: no transactions, no change streams, no partial or
TTL indexes (ADR 0001, ADR 0002). Where one of those would be nicer, the code that does without
says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bson import ObjectId
from bson.errors import InvalidId
from pymongo import AsyncMongoClient, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from hirestream.shared.settings import ServiceSettings

Document = dict[str, Any]
DUPLICATE_KEY = 11000  # the server's error code for a unique index refusing a write


def make_mongo_client(settings: ServiceSettings, *, app_name: str) -> AsyncMongoClient[Document]:
    return AsyncMongoClient(
        settings.mongodb_url.get_secret_value(),
        appname=app_name,
        tz_aware=True,
        # Fail a request in seconds rather than hang it for the driver's 30 s default while
        # the database is away: the API answers 503 and the consumer retries with backoff.
        serverSelectionTimeoutMS=5000,
        connectTimeoutMS=5000,
        # Writes retried once by the driver on a network blip are safe: ours are idempotent.
        retryWrites=True,
    )


@dataclass(frozen=True)
class CollectionIndexes:
    collection: str
    indexes: Sequence[IndexModel] = field(default_factory=tuple)


async def ensure_indexes(db: AsyncDatabase[Document], specs: Sequence[CollectionIndexes]) -> None:
    """Create the indexes a service relies on that do not exist yet (looked up by name): a
    restart asks for nothing, which also suits servers that mishandle re-creating indexes."""
    for spec in specs:
        collection = db[spec.collection]
        existing = {index["name"] async for index in await collection.list_indexes()}
        missing = [index for index in spec.indexes if index.document["name"] not in existing]
        if missing:
            await collection.create_indexes(missing)


def object_id_or_none(value: str) -> ObjectId | None:
    """The ObjectId a caller's id string names, or None for one that cannot be (-> 404)."""
    try:
        return ObjectId(value)
    except (InvalidId, TypeError):
        return None


async def insert_new(
    collection: AsyncCollection[Document], documents: Sequence[Document]
) -> set[int]:
    """Insert each document in one unordered command; returns the indexes of those a unique key
    refused (they exist already: a redelivery), and raises on any other write error."""
    if not documents:
        return set()
    try:
        await collection.insert_many(documents, ordered=False)
    except BulkWriteError as error:
        errors = error.details.get("writeErrors", [])
        if any(e.get("code") != DUPLICATE_KEY for e in errors):
            raise
        return {e["index"] for e in errors}
    return set()


async def ping(client: AsyncMongoClient[Document]) -> None:
    await client.admin.command("ping")

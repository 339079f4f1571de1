"""What the services rely on from the database, checked on the server the tests run against.

MongoDB guarantees these for single-document writes; FerretDB v1 on SQLite needs the
write-serialising proxy of deploy/local/ferretdb/serialise.go for the first two, and the
patch deploy/local/ferretdb/patches/update-reads-before-writing.patch for the many-statement
update and the bounded write-ahead log.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from bson import ObjectId
from pymongo import AsyncMongoClient, ReturnDocument, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from hirestream.notifications.domain import DeliveryStatus, Notification
from hirestream.notifications.store import NotificationStore
from hirestream.shared.events.notifications import Channel
from hirestream.shared.events.types import utc_now
from tests.conftest import unique_db
from tests.support.servers import Servers

pytestmark = pytest.mark.integration

CONTENDERS = 20


@pytest.fixture
async def collection(
    mongo: AsyncMongoClient[dict[str, Any]],
) -> AsyncIterator[AsyncCollection[dict[str, Any]]]:
    db = unique_db("guarantees")
    yield mongo[db]["docs"]
    await mongo.drop_database(db)


async def test_a_conditional_update_is_a_compare_and_set(
    collection: AsyncCollection[dict[str, Any]],
) -> None:
    for round_ in range(3):
        await collection.insert_one({"_id": round_, "version": 1})

        async def bump(contender: int, doc_id: int = round_) -> int:
            result = await collection.update_one(
                {"_id": doc_id, "version": 1}, {"$set": {"version": 2, "by": contender}}
            )
            return result.modified_count

        assert sum(await asyncio.gather(*(bump(i) for i in range(CONTENDERS)))) == 1


async def test_find_one_and_update_claims_once(
    collection: AsyncCollection[dict[str, Any]],
) -> None:
    await collection.insert_one({"_id": "doc", "claim": None})

    async def claim(contender: int) -> bool:
        won = await collection.find_one_and_update(
            {"_id": "doc", "claim": None},
            {"$set": {"claim": contender}},
            return_document=ReturnDocument.AFTER,
        )
        return won is not None

    assert sum(await asyncio.gather(*(claim(i) for i in range(CONTENDERS)))) == 1


async def test_an_update_command_of_many_statements_completes(
    collection: AsyncCollection[dict[str, Any]],
) -> None:
    # FerretDB v1.24 kept each statement's query open until the whole command returned: a
    # bulk write of more than ~100 updates waited for ever on its 100-connection SQLite pool.
    # The time-out only turns that hang into a failure; nothing here measures speed.
    statements = 250
    await collection.insert_many([{"_id": n, "sent": False} for n in range(statements)])
    result = await asyncio.wait_for(
        collection.bulk_write(
            [UpdateOne({"_id": n}, {"$set": {"sent": True}}) for n in range(statements)],
            ordered=False,
        ),
        timeout=120,
    )
    assert result.modified_count == statements
    assert await collection.count_documents({"sent": True}) == statements


async def test_a_stream_of_updates_keeps_the_write_ahead_log_bounded(
    collection: AsyncCollection[dict[str, Any]], servers: Servers
) -> None:
    # FerretDB v1.24 wrote each updated document while the query that found it was still
    # open. An open query holds an SQLite read snapshot, so no checkpoint could ever empty
    # the write-ahead log: it grew with every update (about 18 kB each with a few indexes;
    # 484 MB in a 20 s micro-benchmark) and every commit re-scanned it. SQLite restarts a
    # fully checkpointed log once it passes 1,000 pages (4 MB), so it must stay near that.
    await collection.create_index([("org", 1), ("due_at", 1)])
    await collection.create_index([("candidate", 1)])
    documents = 2_000
    padding = "x" * 1_500  # documents the size of an application with its outbox
    await collection.insert_many(
        [
            {"_id": f"d{n}", "org": "o", "candidate": f"c{n}", "due_at": n, "pad": padding}
            for n in range(documents)
        ]
    )
    log = (
        (servers.stack_dir or Path("/nonexistent"))
        / "mongo"
        / f"{collection.database.name}.sqlite-wal"
    )
    if not log.exists():
        pytest.skip("the database server is not the local stack's FerretDB on SQLite")

    for first in range(0, 2 * documents, 100):
        await collection.bulk_write(
            [
                UpdateOne(
                    {"_id": f"d{n % documents}", "org": "o"}, {"$set": {"due_at": None, "n": n}}
                )
                for n in range(first, first + 100)
            ],
            ordered=False,
        )

    assert await collection.count_documents({"due_at": None}) == documents
    assert log.stat().st_size < 16 * 2**20, f"write-ahead log at {log.stat().st_size:,} bytes"


async def test_a_date_bound_matches_as_on_mongodb(
    collection: AsyncCollection[dict[str, Any]],
) -> None:
    # The outbox sweep and the delivery poll filter on `due <= now`. The local stack's
    # FerretDB narrows such a filter in SQL (patches/sqlite-filter-pushdown.patch); this is
    # what it must still match: dates on both sides of 2001 and 1970, an array by any of its
    # elements, and no null, missing, string or number.
    now = utc_now().replace(microsecond=0)
    values: dict[str, Any] = {
        "past": now - timedelta(seconds=5),
        "now": now,
        "future": now + timedelta(seconds=5),
        "1990": datetime(1990, 1, 1, tzinfo=UTC),
        "1960": datetime(1960, 1, 1, tzinfo=UTC),
        "null": None,
        "string": "2020-01-01",
        "number": 5,
        "array with a past date": [now + timedelta(days=1), now - timedelta(days=1)],
        "array of future dates": [now + timedelta(days=1)],
    }
    await collection.insert_many(
        [{"_id": name, "due": value} for name, value in values.items()] + [{"_id": "missing"}]
    )

    async def ids(query: dict[str, Any]) -> set[str]:
        return {document["_id"] async for document in collection.find(query)}

    past = {"past", "1990", "1960", "array with a past date"}
    assert await ids({"due": {"$lte": now}}) == past | {"now"}
    assert await ids({"due": {"$lt": now}}) == past
    assert await ids({"due": {"$gt": now}}) == {
        "future",
        "array with a past date",
        "array of future dates",
    }
    assert await ids({"due": {"$gte": datetime(1980, 1, 1, tzinfo=UTC), "$lt": now}}) == {
        "past",
        "1990",
        "array with a past date",
    }
    assert await ids({"_id": "future", "due": {"$lte": now}}) == set()


async def test_a_list_of_ids_matches_as_on_mongodb(
    collection: AsyncCollection[dict[str, Any]],
) -> None:
    # The delivery worker reads a round's deliveries with {_id: {$in: [...]}}; the local
    # stack's FerretDB looks them up by its _id index (patches/sqlite-filter-pushdown.patch)
    # when every id is a string or an ObjectId, and must still match as MongoDB does.
    object_id = ObjectId()
    await collection.insert_many([{"_id": "a"}, {"_id": "b"}, {"_id": object_id}, {"_id": 7}])

    async def ids(query: dict[str, Any]) -> set[Any]:
        return {document["_id"] async for document in collection.find(query)}

    assert await ids({"_id": {"$in": ["a", object_id, "absent"]}}) == {"a", object_id}
    assert await ids({"_id": {"$in": ["a", 7]}}) == {"a", 7}
    assert await ids({"_id": {"$in": []}}) == set()
    assert await ids({"_id": {"$in": ["a", "b"]}, "missing": None}) == {"a", "b"}
    assert await ids({"_id": {"$in": ["a", "b"], "$ne": "a"}}) == {"b"}


async def test_a_unique_index_admits_one_of_concurrent_inserts(
    collection: AsyncCollection[dict[str, Any]],
) -> None:
    await collection.create_index([("candidate", 1), ("posting", 1)], unique=True)

    async def insert(contender: int) -> bool:
        try:
            await collection.insert_one({"candidate": "c1", "posting": "p1", "n": contender})
        except DuplicateKeyError:
            return False
        return True

    assert sum(await asyncio.gather(*(insert(i) for i in range(CONTENDERS)))) == 1


def due_email(notification_id: str, due_at: datetime) -> Notification:
    return Notification(
        notification_id=notification_id,
        recipient="user:c1",
        channel=Channel.EMAIL,
        kind="application.submitted",
        subject="a1",
        source_event_id="e1",
        created_at=due_at,
        email="c1@example.com",
        title="Application sent",
        status=DeliveryStatus.PENDING,
        delivery_due_at=due_at,
    )


async def test_the_delivery_queue_gives_each_due_delivery_to_one_worker(
    collection: AsyncCollection[dict[str, Any]],
) -> None:
    # NotificationStore.claim_due reads a batch of due deliveries, then compare-and-sets the
    # due time of each: concurrent workers must never both get one.
    store = NotificationStore(collection)
    now = utc_now()
    await store.create([due_email(f"n{i}", now - timedelta(seconds=i)) for i in range(5)])

    async def worker() -> list[str]:
        taken: list[str] = []
        while (batch := await store.claim_due(now=now, lease=timedelta(minutes=1), limit=2)) or (
            await collection.count_documents({"delivery_due_at": {"$lte": now}})
        ):
            taken += [notification.notification_id for notification in batch]
        return taken

    claims = [
        doc_id for taken in await asyncio.gather(*(worker() for _ in range(8))) for doc_id in taken
    ]
    assert sorted(claims) == [f"n{i}" for i in range(5)]

"""The inline outbox relay's failure handling, with a database that is away (a fake)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

from pymongo import UpdateOne
from pymongo.errors import ServerSelectionTimeoutError

from hirestream.shared.messaging.outbox import OutboxRelay


class DatabaseAway:
    """Answers every read like a database that cannot be reached."""

    name = "aggregates"

    async def find_one(self, *_: Any, **__: Any) -> Any:
        raise ServerSelectionTimeoutError("no server")


async def test_an_inline_relay_that_cannot_read_leaves_the_events_to_the_sweep() -> None:
    published: list[str] = []

    async def publish(topic: str, key: bytes, value: bytes, headers: Mapping[str, str]) -> None:
        published.append(topic)

    relay = OutboxRelay(DatabaseAway(), publish)  # type: ignore[arg-type]
    relay.notify("doc-1")
    relay.notify("doc-1")  # chained behind the first, which failed
    tasks = set(relay._tasks)
    results = await asyncio.gather(*tasks)  # neither raises: the failure is logged
    assert results == [0, 0]
    assert published == []
    assert relay._latest == {}  # nothing kept once done


class NoReadsAllowed:
    """Records the writes; a read would mean the relay fetched what it was given."""

    name = "aggregates"

    def __init__(self) -> None:
        self.commands: list[list[Any]] = []

    async def find_one(self, *_: Any, **__: Any) -> Any:
        raise AssertionError("the relay read back a document it was handed")

    async def bulk_write(self, requests: list[UpdateOne], ordered: bool) -> Any:
        self.commands.append([(r._filter, r._doc) for r in requests])
        return SimpleNamespace(matched_count=len(requests))


def entries_of(doc_id: str) -> list[dict[str, Any]]:
    return [
        {"id": f"{doc_id}-e{n}", "topic": "thing.happened", "key": doc_id, "value": f"v{n}"}
        for n in (1, 2)
    ]


async def test_a_given_outbox_is_published_as_given_and_emptied_in_one_write() -> None:
    published: list[tuple[str, bytes]] = []

    async def publish(topic: str, key: bytes, value: bytes, headers: Mapping[str, str]) -> None:
        published.append((topic, value))

    entries = entries_of("doc-2")
    collection = NoReadsAllowed()
    relay = OutboxRelay(collection, publish)  # type: ignore[arg-type]
    relay.notify("doc-2", written=entries)
    assert await asyncio.gather(*set(relay._tasks)) == [2]
    assert published == [("thing.happened", b"v1"), ("thing.happened", b"v2")]
    assert collection.commands == [
        [({"_id": "doc-2", "outbox": entries}, {"$set": {"outbox": [], "outbox_due_at": None}})]
    ]


async def test_relays_that_finish_together_empty_their_outboxes_in_one_command() -> None:
    async def publish(topic: str, key: bytes, value: bytes, headers: Mapping[str, str]) -> None:
        await asyncio.sleep(0)

    collection = NoReadsAllowed()
    relay = OutboxRelay(collection, publish)  # type: ignore[arg-type]
    documents = [f"doc-{n}" for n in range(5)]
    for doc_id in documents:
        relay.notify(doc_id, written=entries_of(doc_id))
    assert await asyncio.gather(*set(relay._tasks)) == [2] * 5
    # The first relay to finish sends its write alone; the others queued behind it and
    # leave together.
    assert sum(len(command) for command in collection.commands) == 5
    assert len(collection.commands) < 5
    assert {query["_id"] for command in collection.commands for query, _ in command} == set(
        documents
    )

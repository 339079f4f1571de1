"""The inline outbox relay's failure handling, with a database that is away (a fake)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

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
    """Records the pulls; a read would mean the relay fetched what it was given."""

    name = "aggregates"

    def __init__(self) -> None:
        self.pulls: list[tuple[Any, Any]] = []

    async def find_one(self, *_: Any, **__: Any) -> Any:
        raise AssertionError("the relay read back a document it was handed")

    async def update_one(self, query: Any, update: Any) -> Any:
        self.pulls.append((query, update))
        return SimpleNamespace(matched_count=1)


async def test_a_just_inserted_outbox_is_published_as_given_and_emptied_in_one_write() -> None:
    published: list[tuple[str, bytes]] = []

    async def publish(topic: str, key: bytes, value: bytes, headers: Mapping[str, str]) -> None:
        published.append((topic, value))

    entries = [
        {"id": f"e{n}", "topic": "thing.happened", "key": "doc-2", "value": f"v{n}", "headers": {}}
        for n in (1, 2)
    ]
    collection = NoReadsAllowed()
    relay = OutboxRelay(collection, publish)  # type: ignore[arg-type]
    relay.notify("doc-2", inserted=entries)
    assert await asyncio.gather(*set(relay._tasks)) == [2]
    assert published == [("thing.happened", b"v1"), ("thing.happened", b"v2")]
    assert collection.pulls == [
        (
            {"_id": "doc-2", "outbox": entries},
            {"$set": {"outbox": [], "outbox_due_at": None}},
        )
    ]

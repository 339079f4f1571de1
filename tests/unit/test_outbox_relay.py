"""The inline outbox relay's failure handling, with a database that is away (a fake)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
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

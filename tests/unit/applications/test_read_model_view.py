"""What the applications read model stores from each posting event, and how long the
applications route reuses a posting it read."""

import asyncio
from datetime import UTC, datetime
from typing import Any

from hirestream.applications.domain import PostingView
from hirestream.applications.store import PostingReadModel
from hirestream.shared.events.postings import CloseReason, PostingClosed, PostingStatus

NOW = datetime(2026, 11, 28, tzinfo=UTC)


def test_a_closing_does_not_erase_fields_it_does_not_carry() -> None:
    closed = PostingClosed(
        posting_id="p1", org="acme", reason=CloseReason.FILLED, version=3, closed_at=NOW
    )
    fields = PostingView.from_closed(closed).fields_to_store()
    assert fields["status"] is PostingStatus.CLOSED
    assert fields["version"] == 3
    assert "title" not in fields
    assert "skills" not in fields


class OnePostingCollection:
    """A fake collection holding one posting document; counts reads, can hold a read open."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.reads = 0
        self.read_gate: asyncio.Event | None = None

    async def find_one(self, query: dict[str, Any]) -> dict[str, Any] | None:
        self.reads += 1
        seen = dict(self.document)
        if self.read_gate is not None:
            await self.read_gate.wait()
        return seen if query["_id"] == seen["_id"] else None

    async def update_one(self, query: Any, update: dict[str, Any], upsert: bool) -> None:
        self.document = {**self.document, **update["$set"]}


def open_posting(version: int) -> dict[str, Any]:
    return {"_id": "p1", "version": version, "status": "open", "org": "acme"}


async def test_postings_read_for_applications_are_reused_until_a_new_version_is_stored() -> None:
    collection = OnePostingCollection(open_posting(1))
    read_model = PostingReadModel(collection)  # type: ignore[arg-type]
    assert (await read_model.get("p1")) == (await read_model.get("p1"))
    assert collection.reads == 1  # the second came from memory
    assert await read_model.get("unknown") is None
    assert await read_model.get("unknown") is None
    assert collection.reads == 3  # unknown postings are not kept

    closed = PostingClosed(
        posting_id="p1", org="acme", reason=CloseReason.FILLED, version=2, closed_at=NOW
    )
    await read_model.apply(PostingView.from_closed(closed))
    view = await read_model.get("p1")
    assert view is not None
    assert view.status is PostingStatus.CLOSED  # this process's copy was replaced at once


async def test_a_read_that_overlaps_a_stored_version_is_not_kept() -> None:
    collection = OnePostingCollection(open_posting(1))
    read_model = PostingReadModel(collection)  # type: ignore[arg-type]
    collection.read_gate = asyncio.Event()
    slow_read = asyncio.create_task(read_model.get("p1"))  # reads version 1, then waits
    await asyncio.sleep(0)
    closed = PostingClosed(
        posting_id="p1", org="acme", reason=CloseReason.FILLED, version=2, closed_at=NOW
    )
    await read_model.apply(PostingView.from_closed(closed))
    collection.read_gate.set()
    stale = await slow_read
    assert stale is not None
    assert stale.status is PostingStatus.OPEN  # what it read, before the new version
    collection.read_gate = None
    fresh = await read_model.get("p1")
    assert fresh is not None
    assert fresh.status is PostingStatus.CLOSED  # the overlapping read was not kept

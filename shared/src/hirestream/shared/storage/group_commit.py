"""Group commit: single-document writes from concurrent callers, sent as one command (ADR 0006).

Each caller awaits its own write's outcome, as with a plain `insert_one` or `update_one`;
writes that arrive while a command is on its way to the database wait for it, then leave
together in the next one. A lone write leaves at once (no timer, no added latency), and the
batches grow only with the load: the database's cost is mostly per command, not per document.
Written here because the asyncio batching libraries (aiodataloader and the like) coalesce reads
within one loop tick and cache them by key, which is neither what a write needs nor safe for one.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

from pymongo import InsertOne, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, DuplicateKeyError, WriteError

from hirestream.shared.storage.mongo import DUPLICATE_KEY

Item = TypeVar("Item")
Outcome = TypeVar("Outcome")

# What one command carries at most: a BSON command must stay under 48 MB, and a smaller
# batch lets the next one start sooner.
MAX_BATCH = 256

RunBatch = Callable[[Sequence[Item]], Awaitable[Sequence[Outcome | BaseException]]]


class GroupCommit(Generic[Item, Outcome]):
    """Queues writes and runs them in batches, one batch at a time.

    `run_batch` receives the queued items in order and returns, per item, its outcome or the
    exception its caller should see. If `run_batch` itself raises, every caller of that batch
    gets the exception (the command as a whole failed: the database is away, say)."""

    def __init__(self, run_batch: RunBatch[Item, Outcome], *, max_batch: int = MAX_BATCH):
        self._run_batch = run_batch
        self._max_batch = max_batch
        self._queue: deque[tuple[Item, asyncio.Future[Outcome]]] = deque()
        self._flusher: asyncio.Task[None] | None = None

    async def submit(self, item: Item) -> Outcome:
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="group-commit")
        return await future

    async def _flush(self) -> None:
        while self._queue:
            count = min(len(self._queue), self._max_batch)
            batch = [self._queue.popleft() for _ in range(count)]
            try:
                outcomes = await self._run_batch([item for item, _ in batch])
            except asyncio.CancelledError:  # shutting down: nobody waits for ever
                for _, future in [*batch, *self._queue]:
                    future.cancel()
                raise
            except Exception as error:
                outcomes = [error] * len(batch)
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if future.done():  # its caller was cancelled; the write may still have landed
                    continue
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)


Write = InsertOne[Any] | UpdateOne


def bulk_writer(
    collection: AsyncCollection[Any],
) -> Callable[[Sequence[Write]], Awaitable[list[BaseException | None]]]:
    """A `run_batch` for `GroupCommit` that sends the writes as one unordered `bulk_write` and
    gives each caller what its own `insert_one` or `update_one` would have raised: a
    DuplicateKeyError for a duplicate key, a WriteError for any other refusal of its write.

    Only for inserts and for updates that cannot break a unique index: some servers (FerretDB)
    fail the whole command for such an update where MongoDB fails the one statement."""

    async def run(writes: Sequence[Write]) -> list[BaseException | None]:
        outcomes: list[BaseException | None] = [None] * len(writes)
        try:
            await collection.bulk_write(list(writes), ordered=False)
        except BulkWriteError as error:
            if error.details.get("writeConcernErrors"):
                raise
            for failed in error.details.get("writeErrors", []):
                kind = DuplicateKeyError if failed.get("code") == DUPLICATE_KEY else WriteError
                outcomes[failed["index"]] = kind(
                    failed.get("errmsg", ""), failed.get("code"), failed
                )
        return outcomes

    return run

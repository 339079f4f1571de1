"""Transactional outbox without multi-document transactions (DESIGN.md decision 3).

A state change and the events it causes are written in ONE single-document write: the pending
events live in the aggregate's own document, in the `outbox` array. A crash can therefore never
record a change without its events, nor an event without its change, on a standalone MongoDB or
FerretDB, neither of which offers us transactions.

Three fields on the aggregate's document carry the outbox state:

    outbox          pending events in order: {id, topic, key, value, headers}
    outbox_due_at   when a sweep may take the document (null: nothing pending)
    outbox_claim    the token of the relay publishing it right now (null: nobody)

After each write the service calls `OutboxRelay.notify(doc_id)`: a background task claims the
document, publishes its events in order, and pulls them from the array. The write sets
`outbox_due_at` a little in the future, so the sweep leaves that document to the inline relay
and nothing is published twice in the normal path. If the process dies before the pull, the
sweep (every `sweep_interval`) finds the document once `outbox_due_at` has passed and publishes
again: a duplicate on the wire only after a crash, which consumers absorb by event id.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from pymongo import ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection

from hirestream.shared.events.envelope import CONTENT_TYPE, CloudEvent, serialize
from hirestream.shared.events.types import utc_now

log = structlog.get_logger(__name__)

OUTBOX = "outbox"
DUE_AT = "outbox_due_at"
CLAIM = "outbox_claim"

# Index every outboxed collection needs: the sweep looks documents up by due time.
OUTBOX_INDEX = [(DUE_AT, 1)]

Publish = Callable[[str, bytes, bytes, Mapping[str, str]], Awaitable[None]]
"""Sends one record (topic, key, value, headers) and returns once the broker acknowledged it."""


def outbox_entry(event: CloudEvent[Any]) -> dict[str, Any]:
    """How one pending event is stored: the exact bytes to publish, so a retry is identical."""
    headers = {"content-type": CONTENT_TYPE}
    if event.correlationid:
        headers["correlation-id"] = event.correlationid
    return {
        "id": event.id,
        "topic": event.type,
        "key": event.subject,
        "value": serialize(event).decode(),
        "headers": headers,
        "at": utc_now(),  # when it was recorded: the outbox-age metric reads it
    }


@dataclass(frozen=True)
class OutboxTiming:
    # How long the inline relay has before the sweep may take a fresh write's events.
    inline_grace: timedelta = timedelta(seconds=5)
    # How long a claim holds; a relay that died holding one is overtaken after this.
    lease: timedelta = timedelta(seconds=30)
    # After a failed publish, when to try again.
    retry_after: timedelta = timedelta(seconds=2)
    sweep_interval_s: float = 1.0
    sweep_batch: int = 100


def new_outbox_fields(
    events: Iterable[CloudEvent[Any]], timing: OutboxTiming = OutboxTiming()
) -> dict[str, Any]:
    """Fields to store in a NEW aggregate document together with its first events."""
    return {
        OUTBOX: [outbox_entry(event) for event in events],
        DUE_AT: utc_now() + timing.inline_grace,
        CLAIM: None,
    }


def append_outbox_update(
    events: Iterable[CloudEvent[Any]], timing: OutboxTiming = OutboxTiming()
) -> dict[str, Any]:
    """Update operators that append events to an EXISTING document's outbox.

    Merge them into the same `update_one` that records the state change.
    """
    return {
        "$push": {OUTBOX: {"$each": [outbox_entry(event) for event in events]}},
        "$set": {DUE_AT: utc_now() + timing.inline_grace},
    }


@dataclass
class OutboxRelay:
    """Publishes the pending events of one collection's documents and marks them published."""

    collection: AsyncCollection[dict[str, Any]]
    publish: Publish
    timing: OutboxTiming = field(default_factory=OutboxTiming)
    _tasks: set[asyncio.Task[int]] = field(default_factory=set, init=False)
    _sweeper: asyncio.Task[None] | None = field(default=None, init=False)

    def notify(self, doc_id: Any) -> None:
        """Publish this document's pending events soon, without making the caller wait."""
        task = asyncio.create_task(self.relay(doc_id), name=f"outbox-relay-{doc_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def relay(self, doc_id: Any) -> int:
        """Publish a document's pending events now; returns how many were published.

        (The claims below return the whole document: FerretDB v1 does not implement
        findAndModify's projection.)
        """
        published = 0
        while True:
            token = uuid.uuid4().hex
            doc = await self.collection.find_one_and_update(
                {"_id": doc_id, CLAIM: None, DUE_AT: {"$ne": None}},
                {"$set": {CLAIM: token, DUE_AT: utc_now() + self.timing.lease}},
                return_document=ReturnDocument.AFTER,
            )
            if doc is None:
                # Nothing pending, or another relay holds the claim: that one re-checks after
                # it releases, so events appended meanwhile are not left behind.
                return published
            sent = await self._publish_claimed(doc, token)
            if sent is None:
                return published
            published += sent

    async def sweep_once(self) -> int:
        """Publish every document whose events are overdue (left by a crash or a failed send)."""
        published = 0
        now = utc_now()
        cursor = (
            self.collection.find({DUE_AT: {"$lte": now}}, projection={"_id": 1})
            .sort(DUE_AT, 1)
            .limit(self.timing.sweep_batch)
        )
        async for overdue in cursor:
            token = uuid.uuid4().hex
            # An expired due time means any claim on it is stale: take it over.
            doc = await self.collection.find_one_and_update(
                {"_id": overdue["_id"], DUE_AT: {"$lte": now}},
                {"$set": {CLAIM: token, DUE_AT: utc_now() + self.timing.lease}},
                return_document=ReturnDocument.AFTER,
            )
            if doc is not None:
                published += await self._publish_claimed(doc, token) or 0
        return published

    async def _publish_claimed(self, doc: dict[str, Any], token: str) -> int | None:
        entries: list[dict[str, Any]] = doc.get(OUTBOX, [])
        sent: list[dict[str, Any]] = []
        try:
            for entry in entries:  # in order: one aggregate's events keep their order
                await self.publish(
                    entry["topic"],
                    entry["key"].encode(),
                    entry["value"].encode(),
                    entry.get("headers", {}),
                )
                sent.append(entry)
        except Exception as error:
            log.warning(
                "outbox.publish_failed",
                doc_id=str(doc["_id"]),
                pending=len(entries) - len(sent),
                error=type(error).__name__,
            )
            await self._release(doc["_id"], token, sent, retry=True)
            return None
        await self._release(doc["_id"], token, sent, retry=False)
        if sent:
            log.debug("outbox.published", doc_id=str(doc["_id"]), events=len(sent))
        return len(sent)

    async def _release(
        self, doc_id: Any, token: str, sent: list[dict[str, Any]], *, retry: bool
    ) -> None:
        delay = self.timing.retry_after if retry else self.timing.inline_grace
        update: dict[str, Any] = {"$set": {CLAIM: None, DUE_AT: utc_now() + delay}}
        if sent:
            # $pullAll removes exactly the entries we sent, as read. ($pull with a condition
            # such as {"id": {"$in": ids}} would read better, but FerretDB v1 ignores it.)
            update["$pullAll"] = {OUTBOX: sent}
        await self.collection.update_one({"_id": doc_id, CLAIM: token}, update)
        if not retry:
            # Clear the due time only if nothing was appended meanwhile; otherwise the relay
            # loop (or, after a crash, the sweep) publishes the newcomers.
            await self.collection.update_one(
                {"_id": doc_id, CLAIM: None, OUTBOX: {"$size": 0}}, {"$set": {DUE_AT: None}}
            )

    async def pending(self) -> tuple[int, datetime | None]:
        """How many documents have events waiting, and when the oldest waiting one (in the
        document due first) was recorded."""
        count = await self.collection.count_documents({DUE_AT: {"$ne": None}})
        first_due = await self.collection.find_one(
            {DUE_AT: {"$ne": None}}, projection={OUTBOX: 1}, sort=[(DUE_AT, 1)]
        )
        recorded = [entry["at"] for entry in (first_due or {}).get(OUTBOX, []) if "at" in entry]
        return count, min(recorded, default=None)

    def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="outbox-sweeper")

    async def _sweep_forever(self) -> None:
        while True:
            try:
                await self.sweep_once()
            except Exception as error:  # database down: try again next round, never die
                log.warning("outbox.sweep_failed", error=type(error).__name__, detail=str(error))
            await asyncio.sleep(self.timing.sweep_interval_s)

    async def stop(self, timeout_s: float) -> None:
        """Stop sweeping and let inline relays in flight finish (bounded by timeout_s)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
        if self._tasks:
            _, late = await asyncio.wait(set(self._tasks), timeout=timeout_s)
            for task in late:
                task.cancel()  # their events stay in the outbox; the next sweep sends them

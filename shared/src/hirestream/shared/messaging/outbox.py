"""The transactional outbox, without multi-document transactions.

A state change and the events it causes are written in ONE single-document write: the pending
events live in the aggregate's own document, in the `outbox` array, so a crash can never record
a change without its events, nor an event without its change (ADR 0001). Three fields carry
the outbox state:

    outbox          pending events in order: {id, topic, key, value, headers, at}
    outbox_due_at   when a sweep may take the document (null: nothing pending)
    outbox_claim    the token of the sweep publishing it right now (null: nobody)

After each write the unit of work calls `OutboxRelay.notify(doc_id)`: a background task
publishes the document's pending events in order and then removes exactly those from the array.
The write set `outbox_due_at` a few seconds ahead, so the sweep leaves a fresh document to this
inline relay; if the process dies first, the sweep finds the document once the due time has
passed, claims it and publishes: a duplicate on the wire only after a crash, which consumers
absorb by event id.

The inline relay takes no claim (ADR 0004): order holds without one, because every relay
publishes the outbox oldest first and an entry leaves the array only after the broker
acknowledged it. Two relays on one document at once can both send an event (at least once, as
after a crash); in one process they never overlap, since `notify` queues them per document.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from pymongo import ReturnDocument, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection

from hirestream.shared.events.envelope import CONTENT_TYPE, CloudEvent, serialize
from hirestream.shared.events.types import utc_now
from hirestream.shared.storage.group_commit import GroupCommit
from hirestream.shared.tracing import continued

log = structlog.get_logger(__name__)

OUTBOX = "outbox"
DUE_AT = "outbox_due_at"
CLAIM = "outbox_claim"
# The outbox's fields in an aggregate's document: the relay's business, never the aggregate's.
OUTBOX_FIELDS = (OUTBOX, DUE_AT, CLAIM)

# Index every outboxed collection needs: the sweep looks documents up by due time.
OUTBOX_INDEX = [(DUE_AT, 1)]

OutboxEntry = dict[str, Any]
"""One pending event as stored: the exact record to publish, so a retry sends the same bytes."""

Publish = Callable[[str, bytes, bytes, Mapping[str, str]], Awaitable[None]]
"""Sends one record (topic, key, value, headers) and returns once the broker acknowledged it."""


def outbox_entry(event: CloudEvent[Any]) -> OutboxEntry:
    """How one pending event is stored."""
    headers = {"content-type": CONTENT_TYPE}
    if event.correlationid:
        headers["correlation-id"] = event.correlationid
    if event.traceparent:  # so a later publish continues the trace that made the event
        headers["traceparent"] = event.traceparent
        if event.tracestate:
            headers["tracestate"] = event.tracestate
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
    # How often the sweep looks while it finds overdue events. Each round that finds none
    # doubles the wait, up to sweep_idle_interval_s, so an idle service leaves its database
    # alone; a failed relay or sweep starts over at sweep_interval_s. A crash is repaired
    # within inline_grace + sweep_idle_interval_s.
    sweep_interval_s: float = 1.0
    sweep_idle_interval_s: float = 15.0
    sweep_batch: int = 500


def new_outbox_fields(
    entries: Iterable[OutboxEntry], timing: OutboxTiming = OutboxTiming()
) -> dict[str, Any]:
    """Fields to store in a NEW aggregate document together with its first events."""
    entries = list(entries)
    return {
        OUTBOX: entries,
        DUE_AT: utc_now() + timing.inline_grace if entries else None,
        CLAIM: None,
    }


def append_outbox_update(
    entries: Iterable[OutboxEntry], timing: OutboxTiming = OutboxTiming()
) -> dict[str, Any]:
    """Update operators that append events to an EXISTING document's outbox; merge them into
    the same `update_one` that records the state change."""
    return {
        "$push": {OUTBOX: {"$each": list(entries)}},
        "$set": {DUE_AT: utc_now() + timing.inline_grace},
    }


@dataclass(frozen=True)
class OutboxBacklog:
    """What the last sweep found: documents whose events waited past the inline relay's grace
    (`documents`), and when the oldest of those events was recorded."""

    documents: int
    oldest_recorded_at: datetime | None


@dataclass
class OutboxRelay:
    """Publishes the pending events of one collection's documents and marks them published."""

    collection: AsyncCollection[dict[str, Any]]
    publish: Publish
    timing: OutboxTiming = field(default_factory=OutboxTiming)
    _tasks: set[asyncio.Task[int]] = field(default_factory=set, init=False)
    _latest: dict[Any, asyncio.Task[int]] = field(default_factory=dict, init=False)
    _found_overdue: bool = field(default=False, init=False)
    _next_sweep_in_s: float = field(default=0.0, init=False)
    _sweeper: asyncio.Task[None] | None = field(default=None, init=False)
    backlog: OutboxBacklog = field(default_factory=lambda: OutboxBacklog(0, None), init=False)
    _emptying: GroupCommit[tuple[Any, list[dict[str, Any]]], None] = field(init=False)

    def __post_init__(self) -> None:
        self._emptying = GroupCommit(self._empty_outboxes)

    def notify(self, doc_id: Any, *, written: list[dict[str, Any]] | None = None) -> None:
        """Publish this document's pending events soon, without making the caller wait.

        Relays of one document run one after the other (each awaits the one before), so this
        process never sends a document's events twice or out of order. `written`: the
        document's whole outbox as the caller has just written it, when nothing can precede
        those entries (a document just inserted, or one whose outbox only ever holds one
        event); the relay then publishes them as given instead of reading the document."""
        before = self._latest.get(doc_id)
        task = asyncio.create_task(
            self._after(before, doc_id, written), name=f"outbox-relay-{doc_id}"
        )
        self._latest[doc_id] = task
        self._tasks.add(task)
        task.add_done_callback(lambda done: self._forget(doc_id, done))

    def _forget(self, doc_id: Any, task: asyncio.Task[int]) -> None:
        self._tasks.discard(task)
        if self._latest.get(doc_id) is task:
            del self._latest[doc_id]

    async def _after(
        self,
        before: asyncio.Task[int] | None,
        doc_id: Any,
        written: list[dict[str, Any]] | None,
    ) -> int:
        if before is not None:
            await asyncio.gather(before, return_exceptions=True)
        try:
            return await self.relay(doc_id, written=written)
        except Exception as error:  # database away: the events wait for the sweep
            log.warning("outbox.relay_failed", doc_id=str(doc_id), error=type(error).__name__)
            self._sweep_soon()
            return 0

    async def relay(self, doc_id: Any, *, written: list[dict[str, Any]] | None = None) -> int:
        """Publish a document's pending events now; returns how many were published.

        On a failed send the events stay, and the sweep retries once the due time passes."""
        if written is not None:
            doc: dict[str, Any] | None = {"_id": doc_id, OUTBOX: written}
        else:
            doc = await self.collection.find_one({"_id": doc_id}, projection={OUTBOX: 1})
        if not doc or not doc.get(OUTBOX):
            return 0
        sent = await self._publish(doc)
        if len(sent) < len(doc[OUTBOX]):
            self._sweep_soon()  # what was not sent waits for the sweep
        if not sent:
            return 0
        await self._emptying.submit((doc_id, sent))
        log.debug("outbox.published", doc_id=str(doc_id), events=len(sent))
        return len(sent)

    async def _empty_outboxes(
        self, published: Sequence[tuple[Any, list[dict[str, Any]]]]
    ) -> list[None]:
        """The relays' writes after publishing, several documents' in one command (group
        commit, ADR 0006). The usual case: the outbox is still exactly what was sent, so empty
        it and clear the due time (nothing is left for the sweep)."""
        emptied = await self.collection.bulk_write(
            [
                UpdateOne({"_id": doc_id, OUTBOX: sent}, {"$set": {OUTBOX: [], DUE_AT: None}})
                for doc_id, sent in published
            ],
            ordered=False,
        )
        if emptied.matched_count < len(published):
            # Events were added to some since they were read (their own relay follows), or
            # the sweep took some: remove exactly the entries sent, by value (from an outbox
            # emptied above this removes nothing).
            await self.collection.bulk_write(
                [
                    UpdateOne({"_id": doc_id}, {"$pullAll": {OUTBOX: sent}})
                    for doc_id, sent in published
                ],
                ordered=False,
            )
        return [None] * len(published)

    async def sweep_once(self) -> int:
        """Publish every document whose events are overdue (left by a crash or a failed send),
        and clear the due time of those with nothing left to send."""
        published = 0
        now = utc_now()
        overdue = (
            await self.collection.find({DUE_AT: {"$lte": now}}, projection={"_id": 1, OUTBOX: 1})
            .sort(DUE_AT, 1)
            .limit(self.timing.sweep_batch)
            .to_list()
        )
        emptied = [doc["_id"] for doc in overdue if not doc.get(OUTBOX)]
        if emptied:
            # Documents whose events went out but whose due time stayed (the relay's pull
            # raced a new write, or a sweep released them). One command for the round; each
            # statement re-checks, so a document that took new events meanwhile keeps them.
            await self.collection.bulk_write(
                [
                    UpdateOne(
                        {"_id": doc_id, DUE_AT: {"$lte": now}, OUTBOX: {"$size": 0}},
                        {"$set": {DUE_AT: None, CLAIM: None}},
                    )
                    for doc_id in emptied
                ],
                ordered=False,
            )
        overdue = [doc for doc in overdue if doc.get(OUTBOX)]
        # Busy (look again soon) while events are overdue or a full batch came back.
        self._found_overdue = bool(overdue) or len(emptied) == self.timing.sweep_batch
        read_all = len(overdue) + len(emptied) < self.timing.sweep_batch
        await self._record_backlog(overdue, read_all=read_all)
        for doc in overdue:
            token = uuid.uuid4().hex
            # An expired due time means any claim on it is stale: take it over. The claim
            # keeps other replicas' sweeps off the document while this one publishes.
            claimed = await self.collection.find_one_and_update(
                {"_id": doc["_id"], DUE_AT: {"$lte": now}},
                {"$set": {CLAIM: token, DUE_AT: utc_now() + self.timing.lease}},
                return_document=ReturnDocument.AFTER,
            )
            if claimed is None:
                continue
            sent = await self._publish(claimed)
            failed = len(sent) < len(claimed.get(OUTBOX, []))
            delay = self.timing.retry_after if failed else self.timing.inline_grace
            # One write: pull what was sent, release the claim, and come back after `delay`
            # (to retry, or to find the outbox empty and clear the due time in bulk).
            release: dict[str, Any] = {"$set": {CLAIM: None, DUE_AT: utc_now() + delay}}
            if sent:
                release["$pullAll"] = {OUTBOX: sent}
            await self.collection.update_one({"_id": claimed["_id"], CLAIM: token}, release)
            published += len(sent)
        return published

    async def _publish(self, doc: dict[str, Any]) -> list[dict[str, Any]]:
        """Send the document's outbox in order; returns the entries the broker acknowledged
        (a prefix: it stops at the first failure)."""
        entries: list[dict[str, Any]] = doc.get(OUTBOX, [])
        sent: list[dict[str, Any]] = []
        try:
            for entry in entries:  # in order: one aggregate's events keep their order
                headers = entry.get("headers", {})
                with continued(f"outbox {entry['topic']}", headers):
                    await self.publish(
                        entry["topic"], entry["key"].encode(), entry["value"].encode(), headers
                    )
                sent.append(entry)
        except Exception as error:
            log.warning(
                "outbox.publish_failed",
                doc_id=str(doc["_id"]),
                pending=len(entries) - len(sent),
                error=type(error).__name__,
            )
        return sent

    async def _record_backlog(self, overdue: list[dict[str, Any]], *, read_all: bool) -> None:
        """The backlog gauges' figures, from the documents the sweep has just read: the gauges
        cost no query of their own while the backlog fits in one round."""
        documents = len(overdue)
        if not read_all:  # more may wait than one round reads: count them, once per such round
            documents = await self.collection.count_documents(
                {DUE_AT: {"$lte": utc_now()}, OUTBOX: {"$ne": []}}
            )
        recorded = [entry["at"] for doc in overdue for entry in doc[OUTBOX] if "at" in entry]
        self.backlog = OutboxBacklog(documents, min(recorded, default=None))

    def _sweep_soon(self) -> None:
        """Something is left for the sweep: look at the usual pace again, not the idle one."""
        self._next_sweep_in_s = self.timing.sweep_interval_s

    def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="outbox-sweeper")

    async def _sweep_forever(self) -> None:
        self._next_sweep_in_s = self.timing.sweep_interval_s
        while True:
            try:
                await self.sweep_once()
                if self._found_overdue:
                    self._next_sweep_in_s = self.timing.sweep_interval_s
                else:
                    self._next_sweep_in_s = min(
                        self._next_sweep_in_s * 2, self.timing.sweep_idle_interval_s
                    )
            except Exception as error:  # database down: try again next round, never die
                log.warning("outbox.sweep_failed", error=type(error).__name__, detail=str(error))
                self._sweep_soon()
            # Slept in short steps so that `_sweep_soon` cuts a long idle wait short.
            slept = 0.0
            while slept < self._next_sweep_in_s:
                step = min(self.timing.sweep_interval_s, self._next_sweep_in_s - slept)
                await asyncio.sleep(step)
                slept += step

    async def stop(self, timeout_s: float) -> None:
        """Stop sweeping and let inline relays in flight finish (bounded by timeout_s)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
        if self._tasks:
            _, late = await asyncio.wait(set(self._tasks), timeout=timeout_s)
            for task in late:
                task.cancel()  # their events stay in the outbox; the next sweep sends them

"""The database server's ceiling: the writes the guarantees need, and nothing else.

The local stack's database server takes one write command at a time, so those writes set a rate
no service can pass however little its own code costs. Right after each side of POST and of
the drain, this makes exactly those writes through the services' own code, with the batching
and concurrency they get under load, on fresh collections (bench/README.md says which). Their
rate over the baseline's measured rate is `best_ratio`: the most any implementation of the
guarantees could reach on this server. The baseline's own writes are timed beside them.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from bench.data import application_form, application_submitted_event
from bench.load import process_cpu_s
from bench.stack import Bench
from hirestream.applications import services
from hirestream.applications.domain import ApplicationForm, PostingView
from hirestream.applications.store import (
    APPLICATIONS,
    INDEXES,
    POSTINGS_VIEW,
    ApplicationStore,
    PostingReadModel,
)
from hirestream.notifications import store as notifications
from hirestream.notifications.domain import (
    DeliveryAttempt,
    DeliveryStatus,
    Notification,
    plan_application_submitted,
)
from hirestream.notifications.services import _planned
from hirestream.shared.events.applications import APPLICATION_SUBMITTED
from hirestream.shared.events.notifications import Channel
from hirestream.shared.events.postings import PostingStatus
from hirestream.shared.events.types import utc_now
from hirestream.shared.messaging.outbox import OutboxRelay
from hirestream.shared.messaging.subscriptions import MAX_BATCH_RECORDS
from hirestream.shared.storage.mongo import ensure_indexes
from hirestream.shared.web.idempotency import idempotent

CONCURRENCY = 16  # the POST benchmark's workers; the delivery worker's sends at once


def notifications_for(record: bytes) -> list[Notification]:
    """What the notifications service stores for one `application.submitted` that finds no
    facts, preferences or webhooks: the domain's plan, made by the use case's own code."""
    event = APPLICATION_SUBMITTED.parse(record)
    plan = plan_application_submitted(event.data, None, None, {})
    return [_planned(event, planned, utc_now()) for planned in plan]


async def _nowhere(topic: str, key: bytes, value: bytes, headers: Mapping[str, str]) -> None:
    return None


async def _timed(bench: Bench, units: int, work: Callable[[], Awaitable[None]]) -> dict[str, Any]:
    pid = bench.servers.pid("mongo")
    cpu, started = process_cpu_s(pid), time.perf_counter()
    await work()
    seconds = time.perf_counter() - started
    cpu = process_cpu_s(pid) - cpu
    return {
        "units_per_s": round(units / seconds, 1),
        "database_cpu_ms_per_unit": round(cpu * 1000 / units, 3),
        "database_busy_cores": round(cpu / seconds, 2),
    }


async def _in_parallel(count: int, one: Callable[[int], Awaitable[None]]) -> None:
    indexes = iter(range(count))

    async def worker() -> None:
        for index in indexes:
            await one(index)

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))


async def post_writes(bench: Bench, *, requests: int) -> dict[str, Any]:
    """Per request: the bare app's insert; and the `submit_application` use case (the
    application with its outbox entry and idempotency record), then its relay's write after
    "publishing" to nowhere, in the background as in the service."""
    client = bench.mongo()
    database = client[bench.database("floor_post")]
    await ensure_indexes(database, INDEXES)
    store = ApplicationStore(database[APPLICATIONS])
    relay = OutboxRelay(store.collection, publish=_nowhere)
    postings = PostingReadModel(database[POSTINGS_VIEW])
    posting = PostingView(
        posting_id="f" * 24, version=1, status=PostingStatus.OPEN, org="acme", skills=["python"]
    )
    await postings.apply(posting)

    async def bare_insert(index: int) -> None:
        form = application_form(index, run=bench.run_id)
        await database["bare_items"].insert_one({**form, "posting_id": posting.posting_id})

    async def submit(index: int) -> None:
        form = ApplicationForm.model_validate(application_form(index, run=bench.run_id))
        candidate = f"cand-{bench.run_id}-floor-{index}"
        request = {"posting_id": posting.posting_id, "form": form.model_dump(mode="json")}
        key = idempotent(candidate, f"floor-{index}", request)
        command = services.SubmitApplication(posting.posting_id, form, candidate, form.email, key)
        uow = services.ApplicationsUnitOfWork(store, postings, relay, source="bench")
        await services.submit_application(command, uow)

    async def submit_all() -> None:
        await _in_parallel(requests, submit)
        await relay.stop(timeout_s=600)  # the clock stops at the last relay's write

    try:
        baseline = await _timed(bench, requests, lambda: _in_parallel(requests, bare_insert))
        service = await _timed(bench, requests, submit_all)
    finally:
        await client.drop_database(database.name)
        await client.close()
    return {"baseline": baseline, "service": service}


async def drain_writes(bench: Bench, *, events: int) -> dict[str, Any]:
    """Per event: the raw consumer's inserts; and the service's three notifications (a batch at
    a time, as the consumer takes them) and the email's recorded outcome (as the worker)."""
    client = bench.mongo()
    raw, ours = client[bench.database("floor_drain_raw")], client[bench.database("floor_drain")]
    for database in (raw, ours):
        await ensure_indexes(database, notifications.INDEXES)
    raw_store = notifications.NotificationStore(raw[notifications.NOTIFICATIONS])
    store = notifications.NotificationStore(ours[notifications.NOTIFICATIONS])
    rng, run = random.Random(7), f"floor{bench.run_id}"
    batches = [
        [
            one
            for index in range(start, min(start + MAX_BATCH_RECORDS, events))
            for one in notifications_for(application_submitted_event(rng, index, run=run))
        ]
        for start in range(0, events, MAX_BATCH_RECORDS)
    ]

    async def raw_inserts() -> None:
        for batch in batches:
            await raw_store.create(batch)

    async def service_writes() -> None:
        emails: list[str] = []
        for batch in batches:
            made, _ = await store.create(batch)
            emails += [n.notification_id for n in made if n.channel is Channel.EMAIL]

        async def record(index: int) -> None:
            attempt = DeliveryAttempt(number=1, at=utc_now(), ok=True, status_code=250)
            delivered = DeliveryStatus.DELIVERED
            await store.record_attempt(
                emails[index], attempt, retry_at=None, final_status=delivered, owed=[]
            )

        await _in_parallel(len(emails), record)

    try:
        baseline = await _timed(bench, events, raw_inserts)
        service = await _timed(bench, events, service_writes)
    finally:
        for database in (raw, ours):
            await client.drop_database(database.name)
        await client.close()
    return {"baseline": baseline, "service": service}


def ceiling(baseline_per_s: float | None, writes: dict[str, Any]) -> dict[str, Any]:
    alone = writes["service"]["units_per_s"]
    best = round(alone / baseline_per_s, 3) if baseline_per_s else None
    return {"best_ratio": best, "writes_alone_per_s": alone, "writes": writes}

"""What the services' guarantees cost the database server, measured in the same run, and the
best ratio that leaves whatever the services' own code costs.

The local stack's database server takes one write command at a time (deploy/local/ferretdb,
`serialise.go`), so the writes a request or an event needs set a rate that no service can
pass, however little its own code costs. This module runs exactly those writes and nothing
else, through the services' own store code where it has some, with the batching they get under
load, on fresh collections, and reports how many units per second the database server takes:

- POST: an application stored with its outbox entry and idempotency record
  (`ApplicationStore.insert`, six secondary indexes, 16 at a time as the benchmark's workers),
  then the relay's write once its event is sent (`OutboxRelay.relay`, publishing nowhere).
- drain: an event's three notifications (`NotificationStore.create`, a batch at a time as the
  consumer) and the email's delivery outcome (`NotificationStore.record_attempt`, 16 at a time
  as the delivery worker). The facts kept for later events and the reads are left out.

`ceiling` divides that rate by the baseline's measured rate: the best ratio the service could
reach if auth, validation, Kafka, SMTP and everything else it does were free. The baseline's
own writes are timed the same way, for comparison (the bare app's `insert_one` without
indexes; the raw consumer's `insert_many`).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from bench.data import application_form, application_submitted_event
from bench.drain import documents_for
from bench.environment import Bench
from bench.processes import cpu_seconds
from hirestream.applications.api import hashed_request
from hirestream.applications.domain import Application, ApplicationForm, PostingView
from hirestream.applications.store import APPLICATIONS, ApplicationStore
from hirestream.applications.store import INDEXES as APPLICATION_INDEXES
from hirestream.notifications.store import INDEXES as NOTIFICATION_INDEXES
from hirestream.notifications.store import NOTIFICATIONS, NotificationStore
from hirestream.shared.events.applications import APPLICATION_SUBMITTED
from hirestream.shared.events.notifications import Channel, DeliveryOutcome
from hirestream.shared.events.postings import PostingStatus
from hirestream.shared.events.types import utc_now
from hirestream.shared.messaging.outbox import OutboxRelay
from hirestream.shared.storage.mongo import ensure_indexes
from hirestream.shared.web.idempotency import first_response, new_id

POST_CONCURRENCY = 16  # as the POST benchmark's workers
SEND_CONCURRENCY = 16  # as the delivery worker's attempts at once
EVENTS_PER_BATCH = 500  # the most the service's consumer takes at once (MAX_BATCH)


async def _published_nowhere(
    topic: str, key: bytes, value: bytes, headers: Mapping[str, str]
) -> None:
    return None


async def _timed_writes(bench: Bench, work: Callable[[], Awaitable[int]]) -> dict[str, Any]:
    """Run `work` (which returns how many units it did): units per second, and the CPU the
    database server and this process (the driver) used."""
    pid = bench.servers.pid("mongo")
    before, driver_before = cpu_seconds(pid), time.process_time()
    started = time.perf_counter()
    units = await work()
    seconds = time.perf_counter() - started
    cpu_s = cpu_seconds(pid) - before
    return {
        "units": units,
        "seconds": round(seconds, 2),
        "units_per_s": round(units / seconds, 1),
        "database_cpu_s": round(cpu_s, 2),
        "database_cpu_ms_per_unit": round(cpu_s * 1000 / units, 3),
        "driver_cpu_s": round(time.process_time() - driver_before, 2),
    }


async def _in_parallel(count: int, workers: int, one: Callable[[int], Awaitable[None]]) -> int:
    indexes = iter(range(count))

    async def worker() -> None:
        for index in indexes:
            await one(index)

    await asyncio.gather(*(worker() for _ in range(workers)))
    return count


async def post_writes(bench: Bench, *, requests: int) -> dict[str, Any]:
    """The bare app's insert, and an application's writes, per request."""
    client = bench.mongo()
    database = client[bench.database("floor_post")]
    bare = database["bare_items"]
    await ensure_indexes(database, APPLICATION_INDEXES)
    store = ApplicationStore(database[APPLICATIONS])
    relay = OutboxRelay(database[APPLICATIONS], publish=_published_nowhere)
    posting = PostingView(
        posting_id="f" * 24,
        version=1,
        status=PostingStatus.OPEN,
        org="acme-floor",
        title="Backend engineer",
        skills=["python", "kafka"],
    )

    async def bare_insert(index: int) -> None:
        await bare.insert_one({**application_form(index, run=bench.run_id), "posting_id": "p"})

    async def application_writes(index: int) -> None:
        form = ApplicationForm.model_validate(application_form(index, run=bench.run_id))
        candidate, key = f"cand-{bench.run_id}-floor-{index}", f"floor-{index}"
        application, submitted = Application.submit(
            form,
            application_id=new_id(candidate, key),
            candidate_id=candidate,
            posting=posting,
            now=utc_now(),
        )
        event = APPLICATION_SUBMITTED.new(submitted, source="hirestream/applications")
        body = application.__pydantic_serializer__.to_json(application)
        headers = {"Location": f"/applications/{application.application_id}"}
        idempotency = first_response(
            key, hashed_request(posting.posting_id, form), status=201, headers=headers, body=body
        )
        outbox = await store.insert(application, [event], idempotency=idempotency)
        await relay.relay(store.document_id(application.application_id), written=outbox)

    try:
        baseline = await _timed_writes(
            bench, lambda: _in_parallel(requests, POST_CONCURRENCY, bare_insert)
        )
        guaranteed = await _timed_writes(
            bench, lambda: _in_parallel(requests, POST_CONCURRENCY, application_writes)
        )
    finally:
        await client.drop_database(database.name)
        await client.close()
    return {"baseline": baseline, "service": guaranteed}


async def drain_writes(bench: Bench, *, events: int) -> dict[str, Any]:
    """The raw consumer's inserts, and the service's notifications and email outcomes, per
    event."""
    client = bench.mongo()
    raw = client[bench.database("floor_drain_raw")]
    ours = client[bench.database("floor_drain")]
    for database in (raw, ours):
        await ensure_indexes(database, NOTIFICATION_INDEXES)
    store = NotificationStore(ours[NOTIFICATIONS])
    rng = random.Random(7)
    batches = [
        [
            documents_for(
                APPLICATION_SUBMITTED.parse(
                    application_submitted_event(rng, start + index, run=f"floor{bench.run_id}")
                )
            )
            for index in range(min(EVENTS_PER_BATCH, events - start))
        ]
        for start in range(0, events, EVENTS_PER_BATCH)
    ]

    async def raw_inserts() -> int:
        for batch in batches:
            await raw[NOTIFICATIONS].insert_many(
                [document for planned in batch for document in planned], ordered=False
            )
        return events

    async def service_writes() -> int:
        emails: list[Any] = []
        for batch in batches:
            made, _ = await store.create([document for planned in batch for document in planned])
            emails += [doc["_id"] for doc in made if doc["channel"] == Channel.EMAIL.value]

        async def record(index: int) -> None:
            await store.record_attempt(
                emails[index],
                {"at": utc_now(), "number": 1, "status_code": 250, "duration_ms": 1.0, "ok": True},
                retry_at=None,
                final_status=DeliveryOutcome.DELIVERED.value,
                events=[],
            )

        await _in_parallel(len(emails), SEND_CONCURRENCY, record)
        return events

    try:
        baseline = await _timed_writes(bench, raw_inserts)
        guaranteed = await _timed_writes(bench, service_writes)
    finally:
        for database in (raw, ours):
            await client.drop_database(database.name)
        await client.close()
    return {"baseline": baseline, "service": guaranteed}


def ceiling(baseline_per_s: float | None, writes: dict[str, Any]) -> dict[str, Any]:
    """The best ratio the guarantees' writes leave: the database server's rate for them alone
    over the baseline's measured rate (see the module's docstring)."""
    alone = writes["service"]
    return {
        "writes_alone_per_s": alone["units_per_s"],
        "database_busy": round(alone["database_cpu_s"] / alone["seconds"], 2),
        "baseline_per_s": baseline_per_s,
        "best_ratio": round(alone["units_per_s"] / baseline_per_s, 3) if baseline_per_s else None,
        "writes": writes,
    }

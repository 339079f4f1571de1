"""Notifications draining a backlog of `application.submitted`, against a raw consumer that
bulk-inserts the same documents.

The backlog is produced before the notifications service starts (valid events built with the
shared models, `EventType.new` and `serialize`). Then:

- baseline: a plain aiokafka consumer (its own group) reads the backlog in batches, validates
  each record with the shared event model, builds the very notification documents the service
  makes for it (the domain's own plan and deterministic ids: candidate in-app, candidate
  email, employer in-app) and writes each batch with one unordered `insert_many` into a
  collection with the service's indexes, committing after each batch; its clock starts at the
  first records it receives (after joining its consumer group);
- the service: `python -m hirestream.notifications` on a fresh database; the clock starts when
  it answers `/readyz` and stops when its consumer group's committed offsets reach the end of
  the topic (lag 0), or at `drain_max_s`, whichever comes first. The rate is events committed
  per second over that time, not counting those committed before it was ready (it starts
  consuming while it starts up; until run 2026-11-29-13 they were counted, which flattered
  the service by up to a tenth).
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

from aiokafka import AIOKafkaConsumer
from pymongo.errors import BulkWriteError

from bench.data import application_submitted_event
from bench.environment import Bench
from bench.kafka import committed, end_offsets, ensure_topics, produce_all, skip_to_end
from bench.processes import cpu_seconds, machine_cpu_seconds
from bench.stats import Result
from hirestream.notifications.consumers import GROUP_ID
from hirestream.notifications.domain import notification_id, plan_application_submitted
from hirestream.notifications.store import INDEXES as NOTIFICATION_INDEXES
from hirestream.notifications.store import NOTIFICATIONS
from hirestream.shared.events.applications import APPLICATION_SUBMITTED, ApplicationSubmitted
from hirestream.shared.events.envelope import CloudEvent
from hirestream.shared.events.notifications import Channel, DeliveryOutcome
from hirestream.shared.events.types import utc_now
from hirestream.shared.storage.mongo import ensure_indexes

TOPIC = APPLICATION_SUBMITTED.topic
NOTIFICATIONS_PER_EVENT = 3  # candidate in-app + candidate email + employer in-app


def documents_for(event: CloudEvent[ApplicationSubmitted]) -> list[dict[str, Any]]:
    """The notifications the service stores for one event, as they end up (outbox sent)."""
    application = event.data
    now = utc_now()
    documents = []
    for planned in plan_application_submitted(application, None, None, {}):
        document: dict[str, Any] = {
            "_id": notification_id(event.id, planned.recipient, planned.channel),
            "recipient": planned.recipient,
            "channel": planned.channel.value,
            "kind": event.type,
            "subject": event.subject,
            "source_event_id": event.id,
            "correlation_id": event.correlationid,
            "created_at": now,
            "title": planned.title,
            "body": planned.body,
            "outbox": [],
            "outbox_due_at": None,
            "outbox_claim": None,
        }
        if planned.channel is Channel.IN_APP:
            document |= {"read": False, "status": DeliveryOutcome.DELIVERED.value}
        else:
            document |= {
                "email": planned.email,
                "status": "pending",
                "attempts": [],
                "delivery_due_at": now,
            }
        documents.append(document)
    return documents


async def produce_backlog(bench: Bench, events: int) -> dict[str, float]:
    await ensure_topics(bench.servers.kafka_bootstrap, [TOPIC])
    rng = random.Random(42)

    def records() -> Any:
        for index in range(events):
            value = application_submitted_event(rng, index, run=bench.run_id)
            yield f"{index:024x}".encode(), value

    count, seconds = await produce_all(bench.servers.kafka_bootstrap, TOPIC, records())
    return {"events": count, "seconds": round(seconds, 2), "per_s": round(count / seconds, 1)}


async def raw_drain(bench: Bench, events: int, max_s: float) -> dict[str, Any]:
    client = bench.mongo()
    database = client[bench.database("raw_drain")]
    await ensure_indexes(database, NOTIFICATION_INDEXES)
    collection = database[NOTIFICATIONS]
    consumer = AIOKafkaConsumer(
        TOPIC,
        bootstrap_servers=bench.servers.kafka_bootstrap,
        group_id=f"bench-raw-drain-{bench.run_id}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    consumed = inserted = 0
    started = time.perf_counter()
    cpu_before = time.process_time()
    await consumer.start()
    first_batch_at: float | None = None
    machine_cpu_at_first = 0.0
    try:
        while consumed < events and time.perf_counter() - started < max_s:
            batches = await consumer.getmany(timeout_ms=500, max_records=1000)
            if first_batch_at is None and batches:
                # The clock starts at the first records, as the service's starts once it is
                # ready: neither side is timed joining its consumer group.
                first_batch_at = time.perf_counter()
                machine_cpu_at_first = machine_cpu_seconds()
            documents: list[dict[str, Any]] = []
            for records in batches.values():
                for record in records:
                    documents += documents_for(APPLICATION_SUBMITTED.parse(record.value))
                    consumed += 1
            if documents:
                try:
                    result = await collection.insert_many(documents, ordered=False)
                    inserted += len(result.inserted_ids)
                except BulkWriteError as error:  # redelivered: duplicates are no-ops
                    inserted += error.details.get("nInserted", 0)
                await consumer.commit()
    finally:
        await consumer.stop()
        await client.close()
    seconds = time.perf_counter() - (first_batch_at or started)
    machine_cpu_s = machine_cpu_seconds() - machine_cpu_at_first
    return {
        "consumed": consumed,
        "inserted": inserted,
        "seconds": round(seconds, 2),
        "events_per_s": round(consumed / seconds, 1),
        "client_cpu_s": round(time.process_time() - cpu_before, 2),
        "machine_cpu_s": round(machine_cpu_s, 2),
        "machine_cpu_ms_per_event": round(machine_cpu_s * 1000 / consumed, 3) if consumed else None,
        "capped": consumed < events,
    }


async def service_drain(bench: Bench, events: int, max_s: float) -> dict[str, Any]:
    bootstrap = bench.servers.kafka_bootstrap
    ends = await end_offsets(bootstrap, TOPIC)
    total = sum(ends.values())
    database = bench.database("notifications_drain")
    process = bench.service("notifications", database=database)
    launched = time.perf_counter()
    bench.start(process)
    ready = time.perf_counter()
    pid = process.pid
    cpu_at_ready = cpu_seconds(pid)
    machine_cpu_at_ready = machine_cpu_seconds()
    progress: list[tuple[float, int]] = []
    done = 0
    done_at_ready: int | None = None
    while True:
        offsets = await committed(bootstrap, GROUP_ID, TOPIC)
        done = sum(offsets.get(partition, 0) for partition in ends)
        if done_at_ready is None:
            done_at_ready = done  # committed while starting up: not timed, so not counted
        now = time.perf_counter()
        progress.append((round(now - ready, 1), done))
        if done >= total or now - ready >= max_s:
            break
        await asyncio.sleep(1.0)
    seconds = time.perf_counter() - ready
    cpu = cpu_seconds(pid) - cpu_at_ready
    machine_cpu_s = machine_cpu_seconds() - machine_cpu_at_ready
    client = bench.mongo()
    try:
        stored = await client[database][NOTIFICATIONS].estimated_document_count()
    finally:
        await client.close()
    bench.stop(process)
    if done < total:
        # What it left unread must not become the next benchmark's backlog.
        await skip_to_end(bootstrap, GROUP_ID, TOPIC)
    return {
        "backlog": total,
        "consumed": done,
        "seconds": round(seconds, 2),
        "committed_before_ready": done_at_ready,
        "events_per_s": round((done - (done_at_ready or 0)) / seconds, 1) if seconds else None,
        "startup_s": round(ready - launched, 2),
        "server_cpu_s": round(cpu, 2),
        "machine_cpu_s": round(machine_cpu_s, 2),
        "machine_cpu_ms_per_event": (
            round(machine_cpu_s * 1000 / (done - (done_at_ready or 0)), 3)
            if done > (done_at_ready or 0)
            else None
        ),
        "notifications_stored": stored,
        "capped": done < total,
        "progress": _thin(progress, 40),
    }


def _thin(points: list[tuple[float, int]], keep: int) -> list[tuple[float, int]]:
    if len(points) <= keep:
        return points
    step = len(points) / keep
    return [points[int(index * step)] for index in range(keep)] + [points[-1]]


async def run(bench: Bench, *, events: int, max_s: float) -> Result:
    produced = await produce_backlog(bench, events)
    bench.memory.phase = "drain: raw consumer"
    baseline = await raw_drain(bench, events, max_s)
    bench.memory.phase = "drain: service"
    service = await service_drain(bench, events, max_s)
    notes = []
    if service["capped"] or baseline["capped"]:
        notes.append(
            f"measured for at most {max_s:.0f} s: the rate is over the part drained "
            f"(service {service['consumed']}/{service['backlog']}, raw "
            f"{baseline['consumed']}/{events})"
        )
    return Result(
        name="drain",
        what="notifications draining an application.submitted backlog",
        unit="events/s",
        figure=service["events_per_s"],
        baseline=baseline["events_per_s"],
        baseline_what="raw aiokafka consume + one insert_many per batch of the same documents",
        goal=0.6,
        direction="min",
        sizes={"backlog_events": events, "max_s": max_s, "notifications_per_event": 3},
        details={"produce": produced, "service": service, "baseline": baseline},
        notes=notes,
    ).judge()

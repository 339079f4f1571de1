"""The notifications service draining a backlog of `application.submitted`, against a raw
consumer storing the same notifications (made by the service's own code, one `insert_many` a
batch); then the guarantees' writes alone (bench/floor.py). The service's clock runs from its
`/readyz` (what it committed while starting is not counted), the raw consumer's from its first
records: neither is timed joining its group. Meanwhile the service also remembers each
application's facts, announces the in-app notifications and sends the emails."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

from aiokafka import AIOKafkaConsumer

from bench import floor
from bench.data import application_submitted_event
from bench.kafka import committed, ensure_topics, produce_all, skip_to_end
from bench.load import Result, machine_cpu_s, per_unit_ms, process_cpu_s
from bench.stack import Bench
from hirestream.notifications.domain import Notification
from hirestream.notifications.handlers import GROUP
from hirestream.notifications.store import INDEXES, NOTIFICATIONS, NotificationStore
from hirestream.shared.events.applications import APPLICATION_SUBMITTED
from hirestream.shared.storage.mongo import ensure_indexes

TOPIC = APPLICATION_SUBMITTED.topic


async def raw_drain(bench: Bench, events: int, max_s: float) -> dict[str, Any]:
    client = bench.mongo()
    database = client[bench.database("raw_drain")]
    await ensure_indexes(database, INDEXES)
    store = NotificationStore(database[NOTIFICATIONS])
    consumer = AIOKafkaConsumer(
        TOPIC,
        **bench.servers.kafka_client(),
        group_id=f"bench-raw-drain-{bench.run_id}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    consumed = 0
    started = time.perf_counter()
    first: tuple[float, float, float] | None = None  # (wall, own CPU, machine CPU)
    await consumer.start()
    try:
        while consumed < events and time.perf_counter() - started < max_s:
            batches = await consumer.getmany(timeout_ms=500, max_records=1000)
            if first is None and batches:
                # From its first records, as the service's from /readyz: neither side is timed
                # joining its group.
                first = (time.perf_counter(), time.process_time(), machine_cpu_s())
            notifications: list[Notification] = []
            for records in batches.values():
                for record in records:
                    notifications += floor.notifications_for(record.value)
                    consumed += 1
            if notifications:
                await store.create(notifications)
                await consumer.commit()
    finally:
        await consumer.stop()
        await client.close()
    began, cpu, machine = first or (started, 0.0, machine_cpu_s())
    seconds = time.perf_counter() - began
    return {
        "events": consumed,
        "seconds": round(seconds, 2),
        "events_per_s": round(consumed / seconds, 1),
        "cpu_ms_per_event": per_unit_ms(time.process_time() - cpu, consumed),
        "machine_cpu_ms_per_event": per_unit_ms(machine_cpu_s() - machine, consumed),
        "capped": consumed < events,
    }


async def service_drain(bench: Bench, total: int, max_s: float) -> dict[str, Any]:
    bootstrap = bench.servers.kafka_bootstrap
    launched = time.perf_counter()
    process = bench.service("notifications", "notifications_drain")
    ready = time.perf_counter()
    cpu, machine = process_cpu_s(process.pid), machine_cpu_s()
    at_ready = done = await committed(bootstrap, GROUP, TOPIC)
    while done < total and time.perf_counter() - ready < max_s:
        await asyncio.sleep(1.0)
        done = await committed(bootstrap, GROUP, TOPIC)
    seconds = time.perf_counter() - ready
    cpu, machine = process_cpu_s(process.pid) - cpu, machine_cpu_s() - machine
    bench.stop(process)
    if done < total:
        await skip_to_end(bootstrap, GROUP, TOPIC)  # not the next benchmark's backlog
    timed = done - at_ready
    return {
        "events": timed,
        "committed_before_ready": at_ready,
        "seconds": round(seconds, 2),
        "events_per_s": round(timed / seconds, 1),
        "startup_s": round(ready - launched, 2),
        "cpu_ms_per_event": per_unit_ms(cpu, timed),
        "machine_cpu_ms_per_event": per_unit_ms(machine, timed),
        "capped": done < total,
    }


async def run(bench: Bench) -> Result:
    events, max_s = bench.sizes.drain_events, bench.sizes.drain_max_s
    await ensure_topics(bench.servers.kafka_bootstrap, [TOPIC])
    rng = random.Random(42)
    records = (
        (f"{index:024x}".encode(), application_submitted_event(rng, index, run=bench.run_id))
        for index in range(events)
    )
    produced, produce_s = await produce_all(bench.servers.kafka_bootstrap, TOPIC, records)
    baseline = await raw_drain(bench, events, max_s)
    service = await service_drain(bench, produced, max_s)
    writes = await floor.drain_writes(bench, events=bench.sizes.floor_units)
    capped = service["capped"] or baseline["capped"]
    return Result(
        name="drain",
        what="notifications draining an application.submitted backlog",
        unit="events/s",
        figure=service["events_per_s"],
        baseline=baseline["events_per_s"],
        baseline_what="raw aiokafka consumer storing the same notifications, insert_many a batch",
        goal=0.6,
        direction="min",
        sizes={"backlog_events": produced, "max_s": max_s, "notifications_per_event": 3},
        details={
            "produce_s": round(produce_s, 2),
            "service": service,
            "baseline": baseline,
            "ceiling": floor.ceiling(baseline["events_per_s"], writes),
        },
        notes=[f"stopped after {max_s:.0f} s: the rate is of the part drained"] if capped else [],
    )

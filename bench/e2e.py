"""From a candidate's `201 Created` to the candidate's in-app notification, at a steady rate,
against a raw aiokafka produce -> consume round trip at the same rate. The client reads the
notification's announcement on `notification.delivered` (published once it is stored): polling
the inbox would be a full collection scan on FerretDB, loading the database being timed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer

from bench.data import application_form
from bench.kafka import ensure_topics, producer, skip_earlier_backlogs
from bench.load import Latencies, Result, paced, ratio, session
from bench.stack import Bench, create_postings
from hirestream.shared.events.applications import APPLICATION_SUBMITTED
from hirestream.shared.events.notifications import NOTIFICATION_DELIVERED
from hirestream.shared.identity import Role

Send = Callable[[int], Awaitable[tuple[str, float] | None]]


async def round_trips(
    bench: Bench, topic: str, arrived: Callable[[bytes], str | None], send: Send
) -> tuple[Latencies, int]:
    """`send(i)` at the run's rate; each returns the key its record on `topic` will carry and
    the wall time its clock started (None when refused); `arrived` reads a record's key. The
    latencies, and how many keys were not seen within `e2e_settle_s` of the last send."""
    sizes = bench.sizes
    sent: dict[str, float] = {}
    received: dict[str, float] = {}
    consumer = AIOKafkaConsumer(topic, **bench.servers.kafka_client(), group_id=f"bench-{topic}")
    await consumer.start()

    async def listen() -> None:
        async for record in consumer:
            if (key := arrived(record.value)) is not None:
                received.setdefault(key, time.time())

    async def one(index: int) -> None:
        if (started := await send(index)) is not None:
            sent[started[0]] = started[1]

    listener = asyncio.create_task(listen())
    deadline = time.monotonic() + 30
    while not consumer.assignment() and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    for partition in consumer.assignment():  # positioned at the end before the first send
        await consumer.position(partition)
    await paced(sizes.e2e_rate_per_s, int(sizes.e2e_rate_per_s * sizes.e2e_duration_s), one)
    deadline = time.monotonic() + sizes.e2e_settle_s
    while not sent.keys() <= received.keys() and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    listener.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await listener
    await consumer.stop()
    latencies = Latencies([received[key] - at for key, at in sent.items() if key in received])
    return latencies, len(sent.keys() - received.keys())


async def raw(bench: Bench) -> Latencies:
    topic = f"bench.roundtrip.{bench.run_id}"
    await ensure_topics(bench.servers.kafka_bootstrap, [topic])
    sender = producer(bench.servers.kafka_bootstrap)
    await sender.start()

    async def send(index: int) -> tuple[str, float]:
        began, key = time.time(), str(index).encode()
        await sender.send_and_wait(topic, key, key=key)
        return str(index), began

    try:
        return (await round_trips(bench, topic, bytes.decode, send))[0]
    finally:
        await sender.stop()


async def ours(
    bench: Bench, url: str, ids: list[str], statuses: Counter[int]
) -> tuple[Latencies, int]:
    count = int(bench.sizes.e2e_rate_per_s * bench.sizes.e2e_duration_s)
    candidates = [f"cand-{bench.run_id}-e2e-{index}" for index in range(count)]
    for candidate in candidates:
        bench.headers(Role.CANDIDATE, candidate)  # signed before the clock starts

    def arrived(value: bytes) -> str | None:
        data = json.loads(value)["data"]
        wanted = data["channel"] == "in_app" and data["kind"] == APPLICATION_SUBMITTED.name
        return data["recipient"] if wanted else None

    async with session(url, connections=256) as http:

        async def apply(index: int) -> tuple[str, float] | None:
            async with http.post(
                f"/postings/{ids[index % len(ids)]}/applications",
                headers=bench.headers(Role.CANDIDATE, candidates[index]),
                json=application_form(index, run=bench.run_id, candidate=candidates[index]),
            ) as response:
                await response.read()
                statuses[response.status] += 1
                return (
                    (f"user:{candidates[index]}", time.time()) if response.status == 201 else None
                )

        return await round_trips(bench, NOTIFICATION_DELIVERED.topic, arrived, apply)


async def run(bench: Bench) -> Result:
    await skip_earlier_backlogs(bench.servers.kafka_bootstrap)
    postings = bench.service("postings", "postings_e2e")
    applications = bench.service("applications", "applications_e2e")
    notifications = bench.service("notifications", "notifications_e2e")
    database = bench.database("applications_e2e")
    ids = await create_postings(bench, postings.url, database, 5, org="acme-e2e")
    baseline = await raw(bench)
    statuses: Counter[int] = Counter()
    latencies, unseen = await ours(bench, applications.url, ids, statuses)
    bench.stop(notifications, applications, postings)
    settle_s = bench.sizes.e2e_settle_s
    return Result(
        name="e2e_latency",
        what="HTTP 201 -> candidate's in-app notification announced, p99 at a steady rate",
        unit="ms (p99)",
        figure=latencies.ms(99),
        baseline=baseline.ms(99),
        baseline_what="raw aiokafka produce -> consume round trip, same rate (acks=all)",
        goal=5.0,
        direction="max",
        sizes={"rate_per_s": bench.sizes.e2e_rate_per_s, "duration_s": bench.sizes.e2e_duration_s},
        details={
            "service": {"latency": latencies.summary(), "statuses": dict(statuses)},
            "baseline": {"latency": baseline.summary()},
            "p50_ratio": ratio(latencies.ms(50), baseline.ms(50), 2),
            "not_seen_within_settle_s": unseen,
        },
        notes=[f"{unseen} not seen within {settle_s:.0f} s: left out, which flatters the service"]
        if unseen
        else [],
    )

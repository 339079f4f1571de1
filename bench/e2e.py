"""From a candidate's `201 Created` to the candidate's notification in the inbox, at a steady
rate, against a raw aiokafka produce -> consume round trip at the same rate.

The service path: applications stores the application and its event (outbox), the relay
publishes `application.submitted`, notifications consumes it, stores the candidate's in-app
notification and then announces it on `notification.delivered`. The client records the
wall-clock time of each 201 and reads `notification.delivered` (a consumer of its own, at the
end of the topic before the first request): the candidate's in-app announcement arrives once
the notification is in the inbox. Latency = announcement received - 201. The notification's
own `created_at` (the event's `at`) gives a second figure, without the insert and the publish
(`stored_latency`).

Why not poll the inbox: its query (recipient + channel) is a full collection scan on FerretDB
v1, so a poller fast enough to time the path loaded the very database it was timing (an
earlier version of this file did that; its figures are in results/ up to 2026-11-28-7).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer

from bench.data import application_form
from bench.environment import Bench
from bench.kafka import ensure_topics, producer
from bench.load import paced, session
from bench.stats import Latencies, Result
from hirestream.shared.events.applications import APPLICATION_SUBMITTED
from hirestream.shared.events.notifications import NOTIFICATION_DELIVERED
from hirestream.shared.identity import Role


async def service_round_trips(
    bench: Bench,
    applications_url: str,
    posting_ids: list[str],
    *,
    rate: float,
    count: int,
    settle_s: float,
) -> dict[str, Any]:
    answered: dict[str, float] = {}  # recipient -> wall time of the 201
    seen: dict[str, tuple[float, datetime]] = {}  # recipient -> (received, stored at)
    statuses: Counter[str] = Counter()
    http_latency = Latencies()
    announcements = AIOKafkaConsumer(
        NOTIFICATION_DELIVERED.topic,
        bootstrap_servers=bench.servers.kafka_bootstrap,
        group_id=f"bench-e2e-{bench.run_id}",
        auto_offset_reset="latest",
    )
    await announcements.start()
    deadline = time.monotonic() + 30
    while not announcements.assignment() and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    await announcements.seek_to_end()
    sending = True

    async def listen() -> None:
        async for record in announcements:
            data = json.loads(record.value)["data"]
            if data["channel"] == "in_app" and data["kind"] == APPLICATION_SUBMITTED.name:
                at = datetime.fromisoformat(data["at"])
                seen.setdefault(data["recipient"], (time.time(), at))
            if not sending and all(recipient in seen for recipient in answered):
                return

    async with session(applications_url, connections=256) as http:

        async def apply(index: int) -> None:
            candidate = f"cand-{bench.run_id}-e2e-{index}"
            posting_id = posting_ids[index % len(posting_ids)]
            began = time.perf_counter()
            async with http.post(
                f"/postings/{posting_id}/applications",
                headers=bench.headers(Role.CANDIDATE, candidate),
                json=application_form(index, run=bench.run_id),
            ) as response:
                await response.read()
                statuses[str(response.status)] += 1
                if response.status == 201:
                    answered[f"user:{candidate}"] = time.time()
                    http_latency.add(time.perf_counter() - began)

        for index in range(count):  # tokens signed before the clock starts
            bench.token(Role.CANDIDATE, f"cand-{bench.run_id}-e2e-{index}")
        listener = asyncio.create_task(listen())
        await paced(rate, count, apply)
        sending = False
        with contextlib.suppress(TimeoutError):  # what is still unseen is counted as such
            await asyncio.wait_for(listener, timeout=settle_s)
    await announcements.stop()
    latency = Latencies()
    stored = Latencies()
    seen = {recipient: times for recipient, times in seen.items() if recipient in answered}
    for recipient, (when, created_at) in seen.items():
        latency.add(when - answered[recipient])
        stored.add(created_at.timestamp() - answered[recipient])
    return {
        "requests": count,
        "statuses": dict(statuses),
        "notified": len(seen),
        "not_seen_within_settle_s": len(answered) - len(seen),
        "latency": latency.summary(),
        "stored_latency": stored.summary(),
        "post_latency": http_latency.summary(),
        "_samples": latency,
    }


async def kafka_round_trips(
    bench: Bench, *, rate: float, count: int, settle_s: float
) -> dict[str, Any]:
    bootstrap = bench.servers.kafka_bootstrap
    topic = f"bench.roundtrip.{bench.run_id}"
    await ensure_topics(bootstrap, [topic])
    sent: dict[int, float] = {}
    received: dict[int, float] = {}
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"bench-roundtrip-{bench.run_id}",
        auto_offset_reset="earliest",
    )
    sender = producer(bootstrap)
    await consumer.start()
    await sender.start()

    async def receive() -> None:
        async for message in consumer:
            received[int(message.value)] = time.time()
            if len(received) >= count:
                return

    receiving = asyncio.create_task(receive())
    deadline = time.monotonic() + 30
    while not consumer.assignment() and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)

    async def send(index: int) -> None:
        sent[index] = time.time()
        await sender.send_and_wait(topic, str(index).encode(), key=str(index).encode())

    try:
        await paced(rate, count, send)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(receiving, timeout=settle_s)
    finally:
        await sender.stop()
        await consumer.stop()
    latency = Latencies()
    for index, at in received.items():
        latency.add(at - sent[index])
    return {
        "messages": count,
        "received": len(received),
        "latency": latency.summary(),
        "_samples": latency,
    }


async def run(
    bench: Bench,
    applications_url: str,
    posting_ids: list[str],
    *,
    rate: float,
    duration_s: float,
    settle_s: float,
) -> Result:
    count = max(1, int(rate * duration_s))
    bench.memory.phase = "e2e: raw kafka"
    baseline = await kafka_round_trips(bench, rate=rate, count=count, settle_s=settle_s)
    bench.memory.phase = "e2e: service"
    service = await service_round_trips(
        bench,
        applications_url,
        posting_ids,
        rate=rate,
        count=count,
        settle_s=settle_s,
    )
    service_samples: Latencies = service.pop("_samples")
    baseline_samples: Latencies = baseline.pop("_samples")
    notes = []
    if service["not_seen_within_settle_s"]:
        notes.append(
            f"{service['not_seen_within_settle_s']} notifications not seen within "
            f"{settle_s:.0f} s of the last request: left out of the percentiles, so the "
            "figure flatters the service"
        )
    return Result(
        name="e2e_latency",
        what="HTTP 201 -> candidate notification in the inbox, p99 at a steady rate",
        unit="ms (p99)",
        figure=service["latency"]["p99_ms"],
        baseline=baseline["latency"]["p99_ms"],
        baseline_what="raw aiokafka produce -> consume round trip, same rate (acks=all)",
        goal=5.0,
        direction="max",
        sizes={"rate_per_s": rate, "duration_s": duration_s, "requests": count},
        details={
            "service": service,
            "baseline": baseline,
            "p50_ratio": _ratio(service_samples, baseline_samples, 50),
        },
        notes=notes,
    ).judge()


def _ratio(service: Latencies, baseline: Latencies, q: int) -> float | None:
    ours = service.summary()[f"p{q}_ms"]
    theirs = baseline.summary()[f"p{q}_ms"]
    if not isinstance(ours, float) or not isinstance(theirs, float) or not theirs:
        return None
    return round(ours / theirs, 2)

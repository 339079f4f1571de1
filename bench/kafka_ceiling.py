"""The broker's ceiling: Kafka's own ProducerPerformance (Java, from the cached jars) against
the same broker, beside what aiokafka (the services' client, configured as they configure it:
acks=all, idempotence) pushes with the same record count and size. Reported, no goal: it says
how far below the broker the Python side runs, so no other figure is read as "Kafka is slow".
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
from typing import Any

from bench.environment import Bench
from bench.kafka import ensure_topics, produce_all
from bench.stats import Result
from tests.support.servers import STACK_SCRIPT

SUMMARY = re.compile(
    r"(?P<records>\d+) records sent, (?P<rate>[\d.]+) records/sec \((?P<mb>[\d.]+) MB/sec\), "
    r"(?P<avg>[\d.]+) ms avg latency, (?P<max>[\d.]+) ms max latency, (?P<p50>\d+) ms 50th, "
    r"(?P<p95>\d+) ms 95th, (?P<p99>\d+) ms 99th"
)


def producer_performance(bench: Bench, topic: str, records: int, size: int) -> dict[str, Any]:
    command = [
        "bash",
        str(STACK_SCRIPT),
        "kafka-class",
        "org.apache.kafka.tools.ProducerPerformance",
        "--topic",
        topic,
        "--num-records",
        str(records),
        "--record-size",
        str(size),
        "--throughput",
        "-1",
        "--producer-props",
        f"bootstrap.servers={bench.servers.kafka_bootstrap}",
        "acks=all",
        "enable.idempotence=true",
    ]
    env = {**os.environ, **(bench.servers.stack_env or {})}
    finished = subprocess.run(  # noqa: S603 - our own script, fixed arguments
        command, env=env, capture_output=True, text=True, check=False, timeout=600
    )
    found = None
    for line in finished.stdout.splitlines():
        found = SUMMARY.search(line) or found
    if finished.returncode != 0 or found is None:
        raise RuntimeError(
            f"ProducerPerformance failed ({finished.returncode}):\n"
            f"{finished.stdout[-2000:]}\n{finished.stderr[-2000:]}"
        )
    return {
        "records": int(found["records"]),
        "records_per_s": float(found["rate"]),
        "mb_per_s": float(found["mb"]),
        "avg_latency_ms": float(found["avg"]),
        "max_latency_ms": float(found["max"]),
        "p50_ms": int(found["p50"]),
        "p95_ms": int(found["p95"]),
        "p99_ms": int(found["p99"]),
    }


async def run(bench: Bench, *, records: int, size: int) -> Result:
    bootstrap = bench.servers.kafka_bootstrap
    java_topic = f"bench.perf.java.{bench.run_id}"
    python_topic = f"bench.perf.aiokafka.{bench.run_id}"
    await ensure_topics(bootstrap, [java_topic, python_topic])
    java = await asyncio.to_thread(producer_performance, bench, java_topic, records, size)
    payload = os.urandom(size)
    count, seconds = await produce_all(
        bootstrap, python_topic, ((str(i).encode(), payload) for i in range(records))
    )
    python = {
        "records": count,
        "seconds": round(seconds, 2),
        "records_per_s": round(count / seconds, 1),
        "mb_per_s": round(count * size / seconds / 1024 / 1024, 2),
    }
    return Result(
        name="kafka_ceiling",
        what="producer records/s on the broker: aiokafka (services' settings, pipelined)",
        unit="records/s",
        figure=python["records_per_s"],
        baseline=java["records_per_s"],
        baseline_what="Kafka's ProducerPerformance on the same broker (acks=all, idempotence)",
        goal=None,
        direction="report",
        sizes={"records": records, "record_size_bytes": size, "partitions": 3},
        details={"producer_performance": java, "aiokafka": python},
    ).judge()

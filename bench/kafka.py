"""Kafka helpers (topics, producing a backlog, a group's committed offsets), and the broker's
ceiling: Kafka's own ProducerPerformance (Java) against aiokafka configured as the services
configure it. Reported without a goal, so that no other figure is read as "Kafka is slow"."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import time
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    CommitFailedError,
    RebalanceInProgressError,
    TopicAlreadyExistsError,
    UnknownMemberIdError,
)

from bench.load import Result
from bench.stack import Bench
from hirestream.applications.handlers import PIPELINE_GROUP
from hirestream.notifications.handlers import GROUP as NOTIFICATIONS_GROUP
from hirestream.shared.events.applications import APPLICATION_STATUS_CHANGED, APPLICATION_SUBMITTED
from hirestream.shared.events.envelope import CONTENT_TYPE
from hirestream.shared.events.postings import POSTING_CREATED
from tests.support.servers import STACK_SCRIPT, kafka_client

HEADERS = [("content-type", CONTENT_TYPE.encode())]
PARTITIONS = 3


async def ensure_topics(bootstrap: str, topics: Iterable[str]) -> None:
    admin = AIOKafkaAdminClient(**kafka_client(bootstrap))
    await admin.start()
    try:
        missing = set(topics) - set(await admin.list_topics())
        with contextlib.suppress(TopicAlreadyExistsError):
            if missing:
                await admin.create_topics(
                    [NewTopic(name, PARTITIONS, replication_factor=1) for name in missing]
                )
    finally:
        await admin.close()


def producer(bootstrap: str, *, linger_ms: int = 0) -> AIOKafkaProducer:
    """As the services' producer: acks=all, idempotence."""
    return AIOKafkaProducer(
        **kafka_client(bootstrap), acks="all", enable_idempotence=True, linger_ms=linger_ms
    )


async def produce_all(
    bootstrap: str, topic: str, records: Iterable[tuple[bytes, bytes]], *, window: int = 2000
) -> tuple[int, float]:
    """Send (key, value) records as fast as the broker takes them, `window` in flight (5 ms
    linger, the Java client's default); returns (count, seconds)."""
    sender = producer(bootstrap, linger_ms=5)
    await sender.start()
    count, started = 0, time.perf_counter()
    try:
        pending: list[asyncio.Future[object]] = []
        for key, value in records:
            pending.append(await sender.send(topic, value, key=key, headers=HEADERS))
            count += 1
            if len(pending) >= window:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await sender.stop()
    return count, time.perf_counter() - started


async def committed(bootstrap: str, group: str, topic: str) -> int:
    """How many records of `topic` the group has committed, over all partitions."""
    admin = AIOKafkaAdminClient(**kafka_client(bootstrap))
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return sum(meta.offset for tp, meta in offsets.items() if tp.topic == topic and meta.offset > 0)


# The services' consumer groups that an earlier benchmark's records would keep busy: the drain
# leaves 100,000 application.submitted unread by the pipeline projection, for one.
EARLIER_BACKLOGS = [
    *(
        (NOTIFICATIONS_GROUP, t.topic)
        for t in (APPLICATION_SUBMITTED, APPLICATION_STATUS_CHANGED, POSTING_CREATED)
    ),
    *((PIPELINE_GROUP, t.topic) for t in (APPLICATION_SUBMITTED, APPLICATION_STATUS_CHANGED)),
]


async def skip_earlier_backlogs(bootstrap: str) -> None:
    """Before a benchmark starts services: what earlier ones left unread is not its work."""
    await ensure_topics(bootstrap, {topic for _, topic in EARLIER_BACKLOGS})
    for group, topic in EARLIER_BACKLOGS:
        await skip_to_end(bootstrap, group, topic)


async def skip_to_end(bootstrap: str, group: str, topic: str) -> None:
    """Commit the end offsets for `group`: what it left unread is no later benchmark's."""
    consumer = AIOKafkaConsumer(**kafka_client(bootstrap), group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        # The bench and the services alike create topics with three partitions.
        consumer.assign([TopicPartition(topic, number) for number in range(PARTITIONS)])
        ends = await consumer.end_offsets(list(consumer.assignment()))
        # A stopped service's member keeps the group busy until its session times out, and
        # until then the broker refuses a commit from outside it.
        for attempt in range(30):
            try:
                await consumer.commit(dict(ends))
                return
            except (CommitFailedError, UnknownMemberIdError, RebalanceInProgressError):
                if attempt == 29:
                    raise
                await asyncio.sleep(2)
    finally:
        await consumer.stop()


def producer_performance(bench: Bench, topic: str, records: int, size: int) -> tuple[float, str]:
    """Kafka's ProducerPerformance from the cached jars (`stack.sh kafka-class`)."""
    command = [
        "bash", str(STACK_SCRIPT), "kafka-class", "org.apache.kafka.tools.ProducerPerformance",
        "--topic", topic, "--num-records", str(records), "--record-size", str(size),
        "--throughput", "-1", "--producer-props",
        f"bootstrap.servers={bench.servers.kafka_bootstrap}", "acks=all", "enable.idempotence=true",
    ]  # fmt: skip
    if bench.servers.kafka_passwords and bench.servers.stack_dir is not None:
        # Logs in as operator, like the Python producer it is compared with.
        credentials = bench.servers.stack_dir / "kafka-credentials" / "operator.properties"
        command += ["--producer.config", str(credentials)]
    done = subprocess.run(  # noqa: S603 - our own script, fixed arguments
        command,
        env={**os.environ, **(bench.servers.stack_env or {})},
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    summaries = re.findall(r"^\d+ records sent, ([\d.]+) records/sec.*$", done.stdout, re.M)
    if done.returncode != 0 or not summaries:
        raise RuntimeError(
            f"ProducerPerformance failed: {done.stdout[-2000:]}{done.stderr[-2000:]}"
        )
    return float(summaries[-1]), done.stdout.strip().splitlines()[-1]


async def run(bench: Bench) -> Result:
    records, size = bench.sizes.kafka_records, bench.sizes.kafka_record_size
    bootstrap = bench.servers.kafka_bootstrap
    java_topic, python_topic = f"bench.perf.java.{bench.run_id}", f"bench.perf.py.{bench.run_id}"
    await ensure_topics(bootstrap, [java_topic, python_topic])
    java_rate, java_summary = await asyncio.to_thread(
        producer_performance, bench, java_topic, records, size
    )
    payload = os.urandom(size)
    count, seconds = await produce_all(
        bootstrap, python_topic, ((str(i).encode(), payload) for i in range(records))
    )
    return Result(
        name="kafka_ceiling",
        what="producer records/s on the broker: aiokafka (services' settings, pipelined)",
        unit="records/s",
        figure=round(count / seconds, 1),
        baseline=round(java_rate, 1),
        baseline_what="Kafka's ProducerPerformance on the same broker (acks=all, idempotence)",
        goal=None,
        direction="report",
        sizes={"records": records, "record_size_bytes": size, "partitions": PARTITIONS},
        details={"producer_performance": java_summary, "aiokafka_seconds": round(seconds, 2)},
    )

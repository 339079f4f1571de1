"""Kafka helpers for the benchmarks: topics, producing a backlog, consumer-group lag."""

from __future__ import annotations

import asyncio
import contextlib
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

from hirestream.shared.events.envelope import CONTENT_TYPE

HEADERS = [("content-type", CONTENT_TYPE.encode())]
SKIP_ATTEMPTS = 30  # 2 s apart: longer than a consumer session times out


async def ensure_topics(bootstrap: str, topics: Iterable[str], *, partitions: int = 3) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in topics if name not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [
                        NewTopic(name, num_partitions=partitions, replication_factor=1)
                        for name in missing
                    ]
                )
    finally:
        await admin.close()


def producer(bootstrap: str, *, linger_ms: int = 0) -> AIOKafkaProducer:
    """Configured like the services' producer: acks=all and idempotence."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=linger_ms
    )


async def produce_all(
    bootstrap: str, topic: str, records: Iterable[tuple[bytes, bytes]], *, window: int = 2000
) -> tuple[int, float]:
    """Send (key, value) records as fast as the broker takes them (up to `window` in flight);
    returns (count, seconds)."""
    sender = producer(bootstrap, linger_ms=5)
    await sender.start()
    count = 0
    started = time.perf_counter()
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


async def end_offsets(bootstrap: str, topic: str) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [
            TopicPartition(topic, number)
            for number in sorted(
                consumer.partitions_for_topic(topic) or await _partitions(consumer, topic)
            )
        ]
        offsets: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
        return offsets
    finally:
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    await consumer._client.force_metadata_update()  # a fresh consumer knows no topic yet
    return set(consumer.partitions_for_topic(topic) or set())


async def committed(bootstrap: str, group: str, topic: str) -> dict[TopicPartition, int]:
    """The group's committed offsets on `topic` (partitions without a commit are absent)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {
        tp: meta.offset for tp, meta in offsets.items() if tp.topic == topic and meta.offset >= 0
    }


async def skip_to_end(bootstrap: str, group: str, topic: str) -> None:
    """Commit the end offsets for `group` on `topic`: what it left unread stays unread."""
    ends = await end_offsets(bootstrap, topic)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign(list(ends))
        # A member that left without saying so (a stopped service) keeps the group busy
        # until its session times out; until then the broker refuses a commit from outside.
        for attempt in range(SKIP_ATTEMPTS):
            try:
                await consumer.commit(dict(ends))
                return
            except (CommitFailedError, UnknownMemberIdError, RebalanceInProgressError):
                if attempt == SKIP_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(2)
    finally:
        await consumer.stop()

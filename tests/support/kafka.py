"""An independent Kafka client for tests: reads topics the way another team's service would."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer


@dataclass(frozen=True)
class Record:
    topic: str
    key: bytes | None
    value: bytes
    headers: dict[str, str]
    partition: int
    offset: int

    def json(self) -> Any:
        return json.loads(self.value)


async def read_until(
    bootstrap: str,
    topics: list[str],
    done: Callable[[list[Record]], bool],
    *,
    timeout_s: float = 30.0,
) -> list[Record]:
    """Read the topics from the beginning (a fresh consumer group) until `done(records)`."""
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        group_id=f"test-reader-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    records: list[Record] = []
    try:
        async with asyncio.timeout(timeout_s):
            while not done(records):
                batch = await consumer.getmany(timeout_ms=500)
                for messages in batch.values():
                    records.extend(
                        Record(
                            topic=m.topic,
                            key=m.key,
                            value=m.value,
                            headers={k: v.decode() for k, v in m.headers},
                            partition=m.partition,
                            offset=m.offset,
                        )
                        for m in messages
                    )
    except TimeoutError:
        pass  # the caller's assertions say what was missing
    finally:
        await consumer.stop()
    return records


async def produce(bootstrap: str, topic: str, value: bytes, *, key: bytes | None = None) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            topic,
            value,
            key=key,
            headers=[("content-type", b"application/cloudevents+json; charset=UTF-8")],
        )
    finally:
        await producer.stop()

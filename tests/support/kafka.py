"""An independent Kafka client for tests: reads topics the way another team's service would."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from hirestream.shared.events.catalog import BY_NAME, schema_path
from hirestream.shared.events.envelope import CONTENT_TYPE, EventType
from tests.support.servers import kafka_client

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


@cache
def _validator(event_type: EventType[Any]) -> Any:
    """The committed schema's validator, checked and built once: `jsonschema.validate` would
    re-check the schema itself on every record, which made reading a topic CPU-bound."""
    schema = json.loads((SCHEMAS / schema_path(event_type)).read_text())
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    return validator_class(schema)


# Marks the records a test makes invalid on purpose, whatever they claim to be: the topics are
# shared by the whole session, and a later test's reader must not take them for the services'.
POISON_HEADER = "test-poison"


def check_against_contract(record: Record) -> None:
    """Every event a service published, as seen on the wire, must fit the contract: the
    CloudEvents envelope, the committed JSON Schema of its payload, key = subject."""
    event_type = BY_NAME.get(record.topic)
    if event_type is None or POISON_HEADER in record.headers:
        return
    try:
        wire = json.loads(record.value)
    except ValueError:
        return  # a poison record a test put there on purpose
    if not (isinstance(wire, dict) and str(wire.get("source", "")).startswith("hirestream/")):
        return  # not published by a service (tests produce their own events too)
    event = event_type.parse(record.value)
    _validator(event_type).validate(wire["data"])
    assert record.key == event.subject.encode(), "the record key must be the event subject"
    assert record.headers.get("content-type") == CONTENT_TYPE


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


def keyed(records: Iterable[Record], key: str) -> list[Record]:
    """The records of one aggregate (the record key is its id)."""
    return [record for record in records if record.key == key.encode()]


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
        **kafka_client(bootstrap),
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
                    fresh = [
                        Record(
                            topic=m.topic,
                            key=m.key,
                            value=m.value,
                            headers={k: v.decode() for k, v in m.headers},
                            partition=m.partition,
                            offset=m.offset,
                        )
                        for m in messages
                    ]
                    for record in fresh:
                        check_against_contract(record)
                    records.extend(fresh)
    except TimeoutError:
        pass  # the caller's assertions say what was missing
    finally:
        await consumer.stop()
    return records


async def produce(bootstrap: str, topic: str, value: bytes, *, key: bytes | None = None) -> None:
    producer = AIOKafkaProducer(**kafka_client(bootstrap), acks="all")
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

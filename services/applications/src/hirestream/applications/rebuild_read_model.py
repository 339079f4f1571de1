"""`python -m hirestream.applications.rebuild_read_model`: rebuild the postings read model by
replaying the `posting.*` topics from the beginning.

For a new deployment, or a read model that went wrong. Reads every partition of the three
topics from offset 0 up to the end offsets seen at start (records published meanwhile are the
live consumer's business), without a consumer group, so the service's own offsets are left
alone. Applying is version-guarded like the live consumer, so it can run while the service
runs. `--from-scratch` first empties the read model: needed when it holds versions newer than
the topics do (corruption), and briefly makes postings unknown to applicants.

The topics must keep every posting's events (retention or compaction by posting id) for a
replay to be complete; records that do not validate are counted and skipped (the live
consumer has dead-lettered them already).
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from faststream.kafka.security import parse_security

from hirestream.applications.app import ApplicationsSettings
from hirestream.applications.domain import PostingView
from hirestream.applications.store import POSTINGS_VIEW, PostingReadModel
from hirestream.shared.events.envelope import EventType, InvalidEvent
from hirestream.shared.events.postings import POSTING_CLOSED, POSTING_CREATED, POSTING_UPDATED
from hirestream.shared.logging import configure_logging
from hirestream.shared.messaging.broker import bootstrap_servers, kafka_security
from hirestream.shared.settings import load_settings
from hirestream.shared.storage.mongo import make_mongo_client

log = structlog.get_logger(__name__)


@dataclass
class RebuildReport:
    records: int = 0
    applied: int = 0
    already_newer: int = 0
    invalid: int = 0


async def rebuild(settings: ApplicationsSettings, *, from_scratch: bool) -> RebuildReport:
    client = make_mongo_client(settings, app_name="hirestream-applications-rebuild")
    read_model = PostingReadModel(client[settings.mongodb_database][POSTINGS_VIEW])
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers(settings),
        group_id=None,
        enable_auto_commit=False,
        **parse_security(kafka_security(settings)),
    )
    by_topic: dict[str, EventType[Any]] = {
        event_type.topic: event_type
        for event_type in (POSTING_CREATED, POSTING_UPDATED, POSTING_CLOSED)
    }
    report = RebuildReport()
    await consumer.start()
    try:
        partitions = await _partitions_of(settings, list(by_topic))
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        if from_scratch:
            await read_model.clear()
        pending = {tp for tp in partitions if end[tp] > 0}
        while pending:
            batch = await consumer.getmany(*pending, timeout_ms=1000)
            for tp, records in batch.items():
                for record in records:
                    if record.offset >= end[tp]:
                        break
                    report.records += 1
                    try:
                        event_type = by_topic[tp.topic]
                        event = event_type.trusted(event_type.parse(record.value or b""))
                    except InvalidEvent:
                        report.invalid += 1
                        continue
                    if await read_model.apply(PostingView.of(event.data)):
                        report.applied += 1
                    else:
                        report.already_newer += 1
            pending = {tp for tp in pending if await consumer.position(tp) < end[tp]}
    finally:
        await consumer.stop()
        await client.close()
    return report


async def _partitions_of(settings: ApplicationsSettings, topics: list[str]) -> list[TopicPartition]:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers(settings),
        **parse_security(kafka_security(settings)),
    )
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    return [
        TopicPartition(topic["topic"], partition["partition"])
        for topic in described
        if topic.get("error_code", 0) == 0
        for partition in topic["partitions"]
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Rebuild the postings read model from Kafka")
    parser.add_argument(
        "--from-scratch", action="store_true", help="empty the read model before replaying"
    )
    args = parser.parse_args(argv)
    settings = load_settings(ApplicationsSettings)
    configure_logging("applications-rebuild", settings.log_level, settings.log_format)
    report = asyncio.run(rebuild(settings, from_scratch=args.from_scratch))
    log.info("read_model.rebuilt", **vars(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

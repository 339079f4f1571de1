"""Rebuild the postings read model by replaying the `posting.*` topics from the beginning:
`hirestream read-model rebuild [--from-scratch]` (or `python -m
hirestream.applications.rebuild_read_model [--from-scratch]`, the same command).

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

import sys
from dataclasses import dataclass
from typing import Any

from hirestream.applications.app import ApplicationsSettings
from hirestream.applications.domain import PostingView
from hirestream.applications.store import POSTINGS_VIEW, PostingReadModel
from hirestream.shared.cli.kafka import Kafka
from hirestream.shared.cli.main import main as cli
from hirestream.shared.cli.mongo import mongo_client
from hirestream.shared.cli.reading import events_to_end
from hirestream.shared.events.envelope import EventType
from hirestream.shared.events.postings import POSTING_CLOSED, POSTING_CREATED, POSTING_UPDATED
from hirestream.shared.settings import ConnectionSettings

# The service's database unless MONGODB_DATABASE names another.
DATABASE = str(ApplicationsSettings.model_fields["mongodb_database"].default)
BY_TOPIC: dict[str, EventType[Any]] = {
    event_type.topic: event_type
    for event_type in (POSTING_CREATED, POSTING_UPDATED, POSTING_CLOSED)
}


@dataclass
class RebuildReport:
    records: int = 0
    applied: int = 0
    already_newer: int = 0
    invalid: int = 0


async def rebuild(
    settings: ConnectionSettings, *, database: str, from_scratch: bool, timeout_s: float = 15.0
) -> RebuildReport:
    client = mongo_client(settings, timeout_s=timeout_s)
    read_model = PostingReadModel(client[database][POSTINGS_VIEW])
    report = RebuildReport()
    try:
        async with Kafka(settings, timeout_s=timeout_s) as kafka:
            partitions = await kafka.partitions(BY_TOPIC)
            consumer = await kafka.consumer()
            if from_scratch:
                await read_model.clear()
            events = events_to_end(consumer, partitions, BY_TOPIC, label="replaying posting.*")
            async for event in events:
                report.records += 1
                if event is None:
                    report.invalid += 1
                    continue
                if await read_model.apply(PostingView.of(event.data)):
                    report.applied += 1
                else:
                    report.already_newer += 1
    finally:
        await client.close()
    return report


def main(argv: list[str] | None = None) -> int:
    return cli(["read-model", "rebuild", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())

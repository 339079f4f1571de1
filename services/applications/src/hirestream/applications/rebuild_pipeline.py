"""Rebuild the pipeline projection by replaying the `application.*` topics from the beginning:
`hirestream read-model rebuild --projection pipeline [--from-scratch]` (or `python -m
hirestream.applications.rebuild_pipeline [--from-scratch]`, the same command).

Reads every partition of `application.submitted` and `application.status_changed` from the
first offset they still hold up to the end offsets seen at start, without a consumer group, so
the live consumer's offsets are left alone. Recording a step is idempotent, so it can run while
the service runs. Without `--from-scratch` it only adds: journeys of applications whose events
the topics no longer hold (application.submitted carries personal data and expires with
KAFKA_PERSONAL_DATA_RETENTION_MS) are kept as they are; `--from-scratch` first empties the
projection, and then holds only what the topics still hold.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from hirestream.applications.domain import Step
from hirestream.applications.store import PIPELINE, PipelineProjection
from hirestream.shared.cli.kafka import Kafka
from hirestream.shared.cli.main import main as cli
from hirestream.shared.cli.mongo import mongo_client
from hirestream.shared.cli.reading import events_to_end
from hirestream.shared.events.applications import APPLICATION_STATUS_CHANGED, APPLICATION_SUBMITTED
from hirestream.shared.events.envelope import EventType
from hirestream.shared.messaging.subscriptions import MAX_BATCH_RECORDS
from hirestream.shared.settings import ConnectionSettings

BY_TOPIC: dict[str, EventType[Any]] = {
    event_type.topic: event_type
    for event_type in (APPLICATION_SUBMITTED, APPLICATION_STATUS_CHANGED)
}


@dataclass
class PipelineReport:
    records: int = 0
    recorded: int = 0
    invalid: int = 0


async def rebuild(
    settings: ConnectionSettings, *, database: str, from_scratch: bool, timeout_s: float = 15.0
) -> PipelineReport:
    client = mongo_client(settings, timeout_s=timeout_s)
    projection = PipelineProjection(client[database][PIPELINE])
    report = PipelineReport()
    steps: list[Step] = []
    try:
        async with Kafka(settings, timeout_s=timeout_s) as kafka:
            partitions = await kafka.partitions(BY_TOPIC)
            consumer = await kafka.consumer()
            if from_scratch:
                await projection.clear()
            events = events_to_end(consumer, partitions, BY_TOPIC, label="replaying application.*")
            async for event in events:
                report.records += 1
                if event is None:
                    report.invalid += 1
                    continue
                steps.append(Step.of(event.data))
                if len(steps) >= MAX_BATCH_RECORDS:
                    await projection.record(steps)
                    report.recorded += len(steps)
                    steps = []
            await projection.record(steps)
            report.recorded += len(steps)
    finally:
        await client.close()
    return report


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    return cli(["read-model", "rebuild", "--projection", "pipeline", *arguments])


if __name__ == "__main__":
    raise SystemExit(main())

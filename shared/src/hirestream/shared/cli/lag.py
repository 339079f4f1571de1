"""`hirestream lag`: how far each consumer group is behind, per partition.

For every partition of the topics a group has committed offsets on: its committed offset,
the partition's end offset, and the difference. A partition the group never committed on is
listed with lag counted from the partition's beginning (the services' groups start at the
earliest offset).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Any

from aiokafka import TopicPartition

from hirestream.shared.cli.errors import USAGE, CliError
from hirestream.shared.cli.kafka import SASL, Kafka, principal
from hirestream.shared.cli.output import json_line, table


@dataclass(frozen=True)
class PartitionLag:
    group: str
    topic: str
    partition: int
    committed: int | None
    end: int
    lag: int

    def row(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "topic": self.topic,
            "partition": self.partition,
            "committed": self.committed,
            "end": self.end,
            "lag": self.lag,
        }


async def consumer_lag(kafka: Kafka, groups: list[str] | None) -> list[PartitionLag]:
    admin = await kafka.admin()
    known = sorted({str(listed[0]) for listed in await admin.list_consumer_groups()})
    if groups:
        unknown = sorted(set(groups) - set(known))
        if unknown:
            visible = known or ["none"]
            raise CliError(
                f"no consumer group {', '.join(unknown)} (groups: {', '.join(visible)})",
                exit_code=USAGE,
            )
        known = sorted(set(groups))
    committed: dict[str, dict[TopicPartition, int]] = {}
    for group in known:
        offsets = await admin.list_consumer_group_offsets(group)
        committed[group] = {tp: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}
    topics = {tp.topic for offsets in committed.values() for tp in offsets}
    partitions = await kafka.partitions(topics)  # a deleted topic's offsets are left out
    if not partitions:
        return []
    consumer = await kafka.consumer()
    beginning = await consumer.beginning_offsets(partitions)
    end = await consumer.end_offsets(partitions)
    lags: list[PartitionLag] = []
    for group in known:
        group_topics = {tp.topic for tp in committed[group]}
        for tp in partitions:
            if tp.topic not in group_topics:
                continue
            offset = committed[group].get(tp)
            start = beginning[tp] if offset is None else max(offset, beginning[tp])
            lags.append(
                PartitionLag(
                    group, tp.topic, tp.partition, offset, end[tp], max(end[tp] - start, 0)
                )
            )
    return lags


async def lag_command(kafka: Kafka, args: argparse.Namespace) -> int:
    lags = await consumer_lag(kafka, args.group)
    if not lags:
        whose = ""
        if kafka.settings.kafka_security_protocol in SASL:
            whose = f" visible to {principal(kafka.settings)}"
        print(f"no committed offsets{whose}", file=sys.stderr)
        return 0
    if args.json:
        for lag in lags:
            print(json_line(lag.row()))
        return 0
    rows = [
        [
            lag.group,
            lag.topic,
            lag.partition,
            "-" if lag.committed is None else lag.committed,
            lag.end,
            lag.lag,
        ]
        for lag in lags
    ]
    print("\n".join(table(["GROUP", "TOPIC", "PARTITION", "COMMITTED", "END", "LAG"], rows)))
    totals: dict[str, int] = {}
    for lag in lags:
        totals[lag.group] = totals.get(lag.group, 0) + lag.lag
    print()
    print("\n".join(table(["GROUP", "TOTAL_LAG"], sorted(totals.items()))))
    return 0

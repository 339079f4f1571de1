"""The topics a service uses, created at start-up when missing (local runs and tests; where
topics are managed, as by Strimzi's KafkaTopic resources, they exist already)."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from faststream.kafka.security import parse_security

from hirestream.shared.events.envelope import EventType
from hirestream.shared.messaging.broker import bootstrap_servers, kafka_security
from hirestream.shared.settings import ServiceSettings


@dataclass(frozen=True)
class TopicPlan:
    published: Sequence[EventType[Any]]
    consumed: Sequence[EventType[Any]]

    def names(self) -> list[str]:
        names = {t.topic for t in (*self.published, *self.consumed)}
        return sorted(names | {t.dlq_topic for t in self.consumed})

    def personal_data(self) -> set[str]:
        """Topics whose events carry a person's name or address, and their dead letters."""
        types = [*self.published, *self.consumed]
        personal = {t.topic for t in types if t.carries_personal_data}
        return personal | {t.dlq_topic for t in self.consumed if t.carries_personal_data}

    def config(self, topic: str, settings: ServiceSettings) -> dict[str, str]:
        """Retention: bounded where events carry personal data (an erasure must reach the log
        in time), forever where a consumer may need every event from the beginning."""
        if topic in self.personal_data():
            return {"retention.ms": str(settings.kafka_personal_data_retention_ms)}
        if topic in {t.topic for t in (*self.published, *self.consumed) if t.kept_forever}:
            return {"retention.ms": "-1"}
        return {}


async def ensure_topics(settings: ServiceSettings, plan: TopicPlan) -> None:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers(settings),
        **parse_security(kafka_security(settings)),
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in plan.names() if name not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # a replica was quicker
                await admin.create_topics(
                    [
                        NewTopic(
                            name,
                            num_partitions=settings.kafka_topic_partitions,
                            replication_factor=settings.kafka_topic_replication,
                            topic_configs=plan.config(name, settings),
                        )
                        for name in missing
                    ]
                )
    finally:
        await admin.close()

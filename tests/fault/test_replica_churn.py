"""Replicas share the work and survive churn: applications and notifications run as two and
then three replicas each (each its own process, one database and one consumer group per
service), under a steady stream of postings and applications; a third replica of each joins
mid-stream and later the first is killed with SIGKILL.

Every acknowledged request must then have exactly its effects (0 lost, 0 doubled: one document,
one event id on the topic, the read model, both inbox items), every replica must have done part
of the work (answered requests, handled events), and the outboxes of the replicas must have
published each event under one id between them (a second copy of an event only with the same
id, which the consumers deduplicate). How long each consumer group took to recover from each
change is reported (fault-report figures; docs/reliability.md).
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx
import pytest
from pymongo import AsyncMongoClient

from tests.fault.conftest import FaultReport
from tests.support.faults import (
    HTTP_TIMEOUT_S,
    Apis,
    Document,
    Load,
    Stores,
    open_postings,
    settle,
)
from tests.support.processes import ServiceProcess
from tests.support.replicas import (
    Balancer,
    Recovery,
    handled_by_replica,
    members_per_replica,
    recoveries,
    replicas_of,
)
from tests.support.servers import Servers

pytestmark = pytest.mark.e2e

READ_MODEL_GROUP = "applications.postings-read-model"
NOTIFICATIONS_GROUP = "notifications"
# Each phase of the stream, long enough for every replica to be given partitions and work.
PHASE_S = 8.0


def replicated_apis(
    postings: ServiceProcess, applications: Balancer, notifications: Balancer
) -> Apis:
    """The clients of the load: applications and notifications through their balancers."""

    def client(balancer: Balancer, service: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=f"http://{service}", transport=balancer, timeout=HTTP_TIMEOUT_S
        )

    return Apis(
        httpx.AsyncClient(base_url=postings.url, timeout=HTTP_TIMEOUT_S),
        client(applications, "applications"),
        client(notifications, "notifications"),
    )


async def test_replicas_share_the_work_and_lose_nothing_when_one_joins_and_one_is_killed(
    base_env: dict[str, str], servers: Servers, tmp_path: Path, fault_report: FaultReport
) -> None:
    run = uuid.uuid4().hex[:8]
    # One employer writes every posting: the per-caller write budget is not what is tested here.
    base_env = {**base_env, "RATE_LIMIT_WRITES": "100000/minute"}
    databases = {
        name: f"{name}_churn_{run}" for name in ("postings", "applications", "notifications")
    }
    bootstrap = servers.kafka_bootstrap
    changes: list[Recovery] = []
    with (
        replicas_of("postings", base_env, tmp_path, database=databases["postings"], count=1) as (
            postings
        ),
        replicas_of(
            "applications", base_env, tmp_path, database=databases["applications"], count=2
        ) as applications,
        replicas_of(
            "notifications", base_env, tmp_path, database=databases["notifications"], count=2
        ) as notifications,
    ):
        mongo: AsyncMongoClient[Document] = AsyncMongoClient(servers.mongodb_url, tz_aware=True)
        stores = Stores.in_databases(mongo, databases)
        balancers = {
            "applications": Balancer(applications),
            "notifications": Balancer(notifications),
        }
        apis = replicated_apis(postings.started[0], *balancers.values())
        try:
            async with apis.postings, apis.applications, apis.notifications:
                load = Load(apis, await open_postings(apis, stores))
                groups = {
                    group: await members_per_replica(bootstrap, group, replicas=2)
                    for group in (READ_MODEL_GROUP, NOTIFICATIONS_GROUP)
                }
                async with load.running(workers=2, pause_s=0.3):
                    await asyncio.sleep(PHASE_S)  # two replicas each

                    joined = [applications.start(), notifications.start()]
                    await asyncio.gather(*(asyncio.to_thread(r.wait_ready) for r in joined))
                    changes += await recoveries(
                        bootstrap, groups, "a third replica started", replicas=3
                    )
                    await asyncio.sleep(PHASE_S)  # three replicas each

                    applications.kill(applications.started[0])
                    notifications.kill(notifications.started[0])
                    changes += await recoveries(
                        bootstrap, groups, "a replica killed (SIGKILL)", replicas=2
                    )
                    await asyncio.sleep(PHASE_S)  # the two survivors each
                found, _ = await settle(load.answers, stores, bootstrap)
        finally:
            await mongo.close()
        handled = {
            "applications": handled_by_replica(applications),
            "notifications": handled_by_replica(notifications),
        }

    answered = {service: dict(balancer.answered) for service, balancer in balancers.items()}
    fault_report(
        fault="replicas 2 -> 3 -> 2 (one SIGKILL) of applications and notifications",
        **found.figures(),
        http_answers_by_replica=answered,
        events_handled_by_replica={
            service: {replica: sum(topics.values()) for replica, topics in by_replica.items()}
            for service, by_replica in handled.items()
        },
        recoveries=[change.figures() for change in changes],
    )
    assert found.lost == [], found.lost
    assert found.doubled == [], found.doubled
    assert found.half_written == [], found.half_written
    # Requests in flight to the killed replica may go unanswered (status 0); nothing else fails.
    assert set(found.statuses) <= {0, 201}, found.statuses
    for replica in (*applications.started, *notifications.started):
        name = replica.log_path.stem
        service = replica.name
        assert sum(handled[service][name].values()) > 0, f"{name} handled no event"
    for replica in applications.started:
        assert answered["applications"].get(replica.log_path.stem, 0) > 0, (
            f"{replica.log_path.stem} answered no request"
        )

"""Fault test: a Kafka broker of three is killed under load.

A separate local stack with a 3-node KRaft cluster; SIGKILL to the node leading partition 0 of
posting.created while postings and applications keep coming; 10 s later `stack.sh start` brings
it back. Then every acknowledged request is checked end to end (tests/support/faults.py). A
companion test starts the services with all three brokers in KAFKA_BOOTSTRAP_SERVERS.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from pymongo import AsyncMongoClient

from tests.fault.conftest import FaultReport
from tests.support.faults import (
    RUN,
    Document,
    Load,
    Stores,
    api_clients,
    describe_topics,
    kafka_admin,
    open_postings,
    settle,
)
from tests.support.polling import eventually
from tests.support.servers import Servers, from_local_stack, run_stack
from tests.support.system import running_system

pytestmark = pytest.mark.e2e

TOPIC_LEVEL_CONFIG = 1  # DescribeConfigs config_source: DYNAMIC_TOPIC_CONFIG


async def min_insync_replicas(admin: Any, topics: Sequence[str]) -> dict[str, tuple[str, int]]:
    """Each topic's effective min.insync.replicas and where it comes from (config source)."""
    resources = [
        ConfigResource(ConfigResourceType.TOPIC, topic, {"min.insync.replicas": None})
        for topic in topics
    ]
    found = {}
    for response in await admin.describe_configs(resources):
        for resource in response.to_object()["resources"]:
            for entry in resource["config_entries"]:
                source = entry.get("config_source", -1)
                found[resource["resource_name"]] = (entry["config_value"], source)
    return found


async def replicated_three_ways(bootstrap: str) -> dict[str, Any]:
    """Check that every topic of the services has 3 replicas in sync on each partition and
    min.insync.replicas 2. The services set only the replication factor when they create a
    topic, so where min.insync.replicas is not a topic-level setting, it is set here."""
    async with kafka_admin(bootstrap) as admin:
        topics = sorted(t for t in await admin.list_topics() if not t.startswith("__"))
        described = await admin.describe_topics(topics)
        replicas = {
            (t["topic"], len(p["replicas"]), len(p["isr"]))
            for t in described
            for p in t["partitions"]
        }
        assert {(count, isr) for _, count, isr in replicas} == {(3, 3)}, replicas
        before = await min_insync_replicas(admin, topics)
        inherited = [topic for topic, (_, source) in before.items() if source != TOPIC_LEVEL_CONFIG]
        if inherited:
            await admin.alter_configs(
                [
                    ConfigResource(ConfigResourceType.TOPIC, topic, {"min.insync.replicas": "2"})
                    for topic in inherited
                ]
            )
        after = await min_insync_replicas(admin, topics)
    assert {value for value, _ in after.values()} == {"2"}, after
    return {
        "topics": len(topics),
        "replication_factor": 3,
        "min_insync_replicas": 2,
        "min_insync_before": sorted({value for value, _ in before.values()}),
        "min_insync_set_by_test_on": len(inherited),
    }


async def leader_of(bootstrap: str, topic: str, partition: int) -> tuple[int, int]:
    """The node leading a partition, and the active controller."""
    (leader,) = [
        p["leader"]
        for p in (await describe_topics(bootstrap, [topic]))[topic]
        if p["partition"] == partition
    ]
    async with kafka_admin(bootstrap) as admin:
        cluster = await admin.describe_cluster()
    return leader, cluster["controller_id"]


async def in_sync_replicas(bootstrap: str, topic: str) -> set[int]:
    """The nodes in sync on every partition of `topic`."""
    partitions = (await describe_topics(bootstrap, [topic]))[topic]
    return set.intersection(*(set(p["isr"]) for p in partitions))


async def restart_killed_node(cluster: Servers, attempts: int = 3) -> int:
    """`stack.sh start` until the killed node is back; how many tries it took.

    Its ports were picked free from the ephemeral range, so while it is down a client's
    outgoing connection (even one connecting to that very port) can hold one; a later try
    finds it free again."""
    for attempt in range(1, attempts):
        try:
            await asyncio.to_thread(cluster.stack, "start")
            return attempt
        except RuntimeError:
            await asyncio.sleep(5)
    await asyncio.to_thread(cluster.stack, "start")  # the last try: its error fails the test
    return attempts


@contextmanager
def three_node_stack(stack_dir: Path) -> Iterator[Servers]:
    """`from_local_stack` with three Kafka nodes, stopped also when it fails to start."""
    try:
        with from_local_stack(stack_dir, kafka_nodes=3) as started:
            yield started
    except BaseException:
        run_stack({"STACK_DIR": str(stack_dir)}, "stop")  # whatever did start
        raise


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    """A separate local stack whose Kafka is a 3-node KRaft cluster, stopped after the module.

    Its ports are picked free before the nodes bind them; on a busy machine another process's
    outgoing connection can take one in between, and then it starts once more on others."""
    with contextlib.ExitStack() as stack:
        try:
            started = stack.enter_context(three_node_stack(tmp_path_factory.mktemp("cluster")))
        except RuntimeError:
            started = stack.enter_context(three_node_stack(tmp_path_factory.mktemp("cluster")))
        yield started


def cluster_env(base_env: dict[str, str], cluster: Servers, bootstrap: str) -> dict[str, str]:
    """The services' environment on the cluster's stack, topics created with 3 replicas."""
    return {
        **base_env,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "MONGODB_URL": cluster.mongodb_url,
        "SMTP_HOST": cluster.smtp_host,
        "SMTP_PORT": str(cluster.smtp_port),
        "KAFKA_TOPIC_REPLICATION": "3",
    }


def test_services_start_with_a_bootstrap_list_of_three_brokers(
    base_env: dict[str, str], cluster: Servers, tmp_path: Path
) -> None:
    """KAFKA_BOOTSTRAP_SERVERS as Kafka clients take it: every broker, comma-separated."""
    env = cluster_env(base_env, cluster, cluster.kafka_bootstrap)
    try:
        with running_system(env, tmp_path, database_suffix=f"list_{RUN}"):
            pass  # all three answered /readyz with 200
    except RuntimeError as error:
        pytest.fail(f"KAFKA_BOOTSTRAP_SERVERS={cluster.kafka_bootstrap}: {error}"[:3000])


async def test_a_broker_killed_under_load_loses_no_acknowledged_request(
    base_env: dict[str, str], cluster: Servers, tmp_path: Path, fault_report: FaultReport
) -> None:
    bootstrap = cluster.kafka_bootstrap
    # One broker's address is enough to bootstrap (the clients learn the others from it), and
    # the services do not start with the whole list yet: see the test above.
    env = cluster_env(base_env, cluster, bootstrap.split(",")[0])
    with running_system(env, tmp_path, database_suffix=f"cluster_{RUN}") as system:
        replication = await replicated_three_ways(bootstrap)
        mongo: AsyncMongoClient[Document] = AsyncMongoClient(cluster.mongodb_url, tz_aware=True)
        stores = Stores.of(mongo, system)
        try:
            async with api_clients(system) as apis:
                load = Load(apis, await open_postings(apis, stores))
                victim, controller = await leader_of(bootstrap, "posting.created", 0)
                async with load.running(workers=1, pause_s=1.0):
                    await asyncio.sleep(3)  # acknowledged requests before the fault
                    os.kill(cluster.pid(f"kafka-{victim}"), signal.SIGKILL)
                    killed_at = time.monotonic()
                    try:
                        await asyncio.sleep(10)
                    finally:
                        restart_attempts = await restart_killed_node(cluster)
                        restarted_at = time.monotonic()
                    await asyncio.sleep(3)  # acknowledged requests after the restart

                async def back_in_sync() -> bool:
                    return victim in await in_sync_replicas(bootstrap, "posting.created")

                await eventually(back_in_sync, timeout_s=60, every_s=0.5)
                in_sync_s = time.monotonic() - restarted_at
                found, complete_at = await settle(load.answers, stores, bootstrap)
        finally:
            await mongo.close()

    fault_report(
        fault="SIGKILL of one of three Kafka nodes",
        killed_node=victim,
        killed_node_was_controller=victim == controller,
        **replication,
        down_s=round(restarted_at - killed_at, 1),
        restart_attempts=restart_attempts,
        **found.figures(),
        back_in_sync_s=round(in_sync_s, 1),
        recovery_effects_s=round(complete_at - restarted_at, 1),
    )
    assert found.statuses == {201: len(found.answers)}, found.statuses
    assert found.lost == [], found.lost
    assert found.doubled == [], found.doubled

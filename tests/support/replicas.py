"""Several replicas of a service, each its own process on one shared database and consumer
group, as a Deployment with `replicas: N` runs them; and what the churn test reads about them.

`Balancer` is the test's Kubernetes Service: each request goes to the next replica in turn, and
a replica that refuses the connection (killed) is skipped, as an endpoint that failed its
readiness probe would be. A request already sent to a replica that then dies is not retried:
the client sees the reset, as it would in production.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from tests.support.polling import eventually
from tests.support.processes import ServiceProcess
from tests.support.servers import free_port, kafka_client, kafka_env


@dataclass
class Replicas:
    """The replicas of one service: started, and some killed, over a test."""

    service: str
    env: dict[str, str]
    log_dir: Path
    started: list[ServiceProcess] = field(default_factory=list)
    killed: set[str] = field(default_factory=set)  # names of the replicas killed

    def start(self) -> ServiceProcess:
        """One more replica, not yet waited for (`ServiceProcess.wait_ready`)."""
        name = f"{self.service}-{len(self.started) + 1}"
        replica = ServiceProcess(
            name=self.service,
            port=free_port(),
            env=self.env,
            log_path=self.log_dir / f"{name}.log",
        )
        replica.start()
        self.started.append(replica)
        return replica

    def kill(self, replica: ServiceProcess) -> None:
        """SIGKILL: no drain, no leaving the consumer group, leases and claims left behind."""
        assert replica.process is not None
        replica.process.kill()
        replica.process.wait()
        self.killed.add(replica.log_path.stem)

    @property
    def live(self) -> list[ServiceProcess]:
        return [r for r in self.started if r.log_path.stem not in self.killed]

    def stop(self) -> None:
        for replica in self.live:
            replica.stop()


@contextmanager
def replicas_of(
    service: str, base_env: dict[str, str], log_dir: Path, *, database: str, count: int
) -> Iterator[Replicas]:
    """`count` ready replicas of `service` on `database`; SIGTERM for those alive at the end."""
    replicas = Replicas(
        service,
        {
            **base_env,
            **kafka_env(base_env["KAFKA_BOOTSTRAP_SERVERS"], service),
            "MONGODB_DATABASE": database,
            "LOG_FORMAT": "json",
        },
        log_dir,
    )
    try:
        for replica in [replicas.start() for _ in range(count)]:
            replica.wait_ready()
        yield replicas
    finally:
        replicas.stop()


class Balancer(httpx.AsyncBaseTransport):
    """Round robin over a service's live replicas; counts the answers each one gave."""

    def __init__(self, replicas: Replicas) -> None:
        self._replicas = replicas
        self._inner = httpx.AsyncHTTPTransport()
        self._turn = itertools.count()
        self.answered: Counter[str] = Counter()  # by replica name

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        live = self._replicas.live
        for _ in range(len(live)):
            replica = live[next(self._turn) % len(live)]
            request.url = request.url.copy_with(host="127.0.0.1", port=replica.port)
            try:
                response = await self._inner.handle_async_request(request)
            except httpx.ConnectError:
                continue  # nothing was sent: the next replica may take it
            self.answered[replica.log_path.stem] += 1
            return response
        raise httpx.ConnectError("no replica accepts connections", request=request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def handled_by_replica(replicas: Replicas) -> dict[str, Counter[str]]:
    """Per replica, the events its consumers handled, by topic (its `event.handled` lines)."""
    handled: dict[str, Counter[str]] = {}
    for replica in replicas.started:
        topics: Counter[str] = Counter()
        for line in replica.log_path.read_text(errors="replace").splitlines():
            if '"event.handled"' not in line:
                continue
            try:
                topics[json.loads(line).get("topic", "?")] += 1
            except json.JSONDecodeError:
                continue  # a line cut short by SIGKILL
        handled[replica.log_path.stem] = topics
    return handled


# ------------------------------------------------------------------- consumer group state


@dataclass(frozen=True)
class GroupState:
    state: str
    members: int


async def group_state(bootstrap: str, group: str) -> GroupState:
    admin = AIOKafkaAdminClient(**kafka_client(bootstrap))
    await admin.start()
    try:
        (response,) = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    _error, _group, state, _type, _protocol, members = response.groups[0]
    return GroupState(state, len(members))


async def committed_and_end(
    bootstrap: str, group: str
) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
    """The group's committed offset and the end offset of each partition it has committed."""
    admin = AIOKafkaAdminClient(**kafka_client(bootstrap))
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    committed = {tp: meta.offset for tp, meta in offsets.items()}
    consumer = AIOKafkaConsumer(**kafka_client(bootstrap), enable_auto_commit=False)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(list(committed))
    finally:
        await consumer.stop()
    return committed, dict(ends)


@dataclass(frozen=True)
class Recovery:
    """How long a consumer group took to get over one change of its members."""

    group: str
    change: str  # "replica started", "replica killed"
    stable_s: float  # until the group was Stable with the live replicas as its members
    caught_up_s: float  # until it had handled everything published before the change

    def figures(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "change": self.change,
            "stable_s": round(self.stable_s, 1),
            "caught_up_s": round(self.caught_up_s, 1),
        }


async def recovery(
    bootstrap: str, group: str, change: str, *, members: int, timeout_s: float = 120
) -> Recovery:
    """Call right after the change: measures until the group is Stable with `members` members,
    then until its committed offsets reach the end offsets as they were at the change."""
    began = time.monotonic()
    _, ends_at_change = await committed_and_end(bootstrap, group)

    async def stable() -> bool:
        found = await group_state(bootstrap, group)
        return found.state == "Stable" and found.members == members

    await eventually(stable, timeout_s=timeout_s, every_s=0.25)
    stable_s = time.monotonic() - began

    async def caught_up() -> bool:
        committed, _ = await committed_and_end(bootstrap, group)
        return all(committed.get(tp, -1) >= end for tp, end in ends_at_change.items())

    await eventually(caught_up, timeout_s=timeout_s, every_s=0.25)
    return Recovery(group, change, stable_s, time.monotonic() - began)


async def recoveries(
    bootstrap: str, groups: dict[str, int], change: str, *, replicas: int
) -> list[Recovery]:
    """`recovery` of several groups at once, each to end with `replicas` live replicas; groups
    maps a group to its members per replica (one per subscriber of the service)."""
    return list(
        await asyncio.gather(
            *(
                recovery(bootstrap, group, change, members=per_replica * replicas)
                for group, per_replica in groups.items()
            )
        )
    )


async def members_per_replica(bootstrap: str, group: str, *, replicas: int) -> int:
    """Once the group is Stable: how many members each replica has in it (FastStream gives
    each subscriber a consumer of its own)."""

    async def settled() -> GroupState | None:
        found = await group_state(bootstrap, group)
        return found if found.state == "Stable" and found.members % replicas == 0 else None

    found = await eventually(settled, timeout_s=120, every_s=0.5)
    return found.members // replicas

"""The outbox survives a crash between the write and the publish.

Kafka is frozen (SIGSTOP) so that the postings service can store a posting but not publish its
event; the service is then killed with SIGKILL while its relay waits. Kafka resumes, the
service restarts on the same database, and its sweep publishes the event: exactly once.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from bson import ObjectId
from pymongo import AsyncMongoClient

from tests.conftest import bearer, unique_db
from tests.support.factories import posting_body
from tests.support.kafka import read_until
from tests.support.processes import ServiceProcess
from tests.support.servers import Servers, free_port, kafka_env

pytestmark = pytest.mark.e2e

LEASE_S = 3


@contextmanager
def frozen_kafka(servers: Servers) -> Iterator[None]:
    """SIGSTOP the broker process of the local stack, and always SIGCONT it again."""
    if servers.stack_dir is None:
        pytest.fail("this fault test signals the broker process: run it on the local stack")
    pid = int((servers.stack_dir / "kafka.pid").read_text().split()[0])
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


async def test_killed_between_write_and_publish_the_event_appears_exactly_once(
    base_env: dict[str, str],
    servers: Servers,
    mongo: AsyncMongoClient[dict[str, Any]],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    database = unique_db("postings")
    postings = ServiceProcess(
        name="postings",
        port=free_port(),
        env={
            **base_env,
            **kafka_env(base_env["KAFKA_BOOTSTRAP_SERVERS"], "postings"),
            "MONGODB_DATABASE": database,
            "OUTBOX_LEASE_S": str(LEASE_S),
        },
        log_path=tmp_path_factory.mktemp("crash") / "postings.log",
    )
    postings.start()
    try:
        postings.wait_ready()
        with frozen_kafka(servers):
            async with httpx.AsyncClient(base_url=postings.url, timeout=10) as client:
                created = await client.post(
                    "/postings",
                    json=posting_body(title="Backend Engineer, Outbox Crash"),
                    headers=bearer("employer", org="crash-test"),
                )
            assert created.status_code == 201, created.text
            posting_id = created.json()["posting_id"]
            await asyncio.sleep(1)  # the relay has claimed the event and waits on the broker
            assert postings.process is not None
            postings.process.kill()  # SIGKILL: no shutdown, no flush
            postings.process.wait()

        document = await mongo[database]["postings"].find_one({"_id": ObjectId(posting_id)})
        assert document is not None
        assert len(document["outbox"]) == 1, "the event was stored with the posting"

        postings.start()  # same database: indexes exist, the sweep finds the stranded event
        postings.wait_ready()

        def ours(records: list[Any]) -> list[Any]:
            return [r for r in records if r.key == posting_id.encode()]

        await read_until(
            servers.kafka_bootstrap,
            ["posting.created"],
            lambda rs: len(ours(rs)) >= 1,
            timeout_s=LEASE_S * 10,
        )
        await asyncio.sleep(LEASE_S * 2)  # time for a wrong second publish to show
        records = await read_until(
            servers.kafka_bootstrap, ["posting.created"], lambda rs: False, timeout_s=5
        )
        assert len(ours(records)) == 1, postings.tail()
        document = await mongo[database]["postings"].find_one({"_id": ObjectId(posting_id)})
        assert document is not None
        assert document["outbox"] == []
    finally:
        postings.stop()

"""Fault test: the database hangs under load.

The three services run as processes; postings and applications keep coming through their HTTP
APIs. SIGSTOP to the MongoDB-protocol server of the session's local stack
(`servers.pid("mongo")`), SIGCONT at least 10 s later, once the requests made meanwhile have
their answers: connections stay open and nothing answers, as with a hung database. Then every
acknowledged request is checked end to end: its document, its event on the topic, and its
effects in the other services (tests/support/faults.py).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from tests.fault.conftest import FaultReport
from tests.support.faults import (
    EMPLOYER,
    RUN,
    Apis,
    Document,
    Load,
    Stores,
    api_clients,
    open_postings,
    settle,
)
from tests.support.polling import eventually
from tests.support.servers import Servers
from tests.support.system import running_system

pytestmark = pytest.mark.e2e

# A relay that claimed a document just before the database stopped holds its claim this long;
# short, so that the sweep takes such a document over soon after the database is back.
OUTBOX_LEASE_S = 5


def stack_pid(servers: Servers, name: str) -> int:
    if servers.stack_dir is None:
        pytest.fail(f"this fault test signals the {name} process: run it on the local stack")
    return servers.pid(name)


def assert_unavailable(response: httpx.Response | None, what: str) -> dict[str, Any]:
    """A 503 problem document with Retry-After; its body."""
    assert response is not None, f"{what}: no HTTP answer"
    assert response.status_code == 503, f"{what}: {response.status_code} {response.text}"
    assert response.headers.get("Retry-After"), f"{what}: no Retry-After"
    assert response.headers["content-type"].startswith("application/problem+json"), what
    body: dict[str, Any] = response.json()
    assert body["status"] == 503, body
    assert body["title"], body
    assert body["detail"], body
    return body


async def all_ready(apis: Apis) -> bool:
    try:
        answers = await asyncio.gather(*(client.get("/readyz") for client in apis.all))
    except httpx.HTTPError:
        return False
    return all(answer.status_code == 200 for answer in answers)


async def test_database_hang_answers_503_and_every_acknowledged_request_completes(
    base_env: dict[str, str],
    servers: Servers,
    mongo: AsyncMongoClient[Document],
    tmp_path: Path,
    fault_report: FaultReport,
) -> None:
    mongo_pid = stack_pid(servers, "mongo")
    with running_system(
        base_env,
        tmp_path,
        database_suffix=f"dbhang_{RUN}",
        extra_env={"OUTBOX_LEASE_S": str(OUTBOX_LEASE_S)},
    ) as system:
        stores = Stores.of(mongo, system)
        async with api_clients(system) as apis:
            load = Load(apis, await open_postings(apis, stores))
            async with load.running(workers=2):
                await asyncio.sleep(3)  # acknowledged requests before the fault

                os.kill(mongo_pid, signal.SIGSTOP)
                stopped_at = time.monotonic()
                try:
                    # Asked while it is stopped; they are answered once the driver gives up on
                    # the silent server, so it stays stopped until then (at least 10 s).
                    await asyncio.sleep(0.5)
                    created, read, applied, readiness = await asyncio.gather(
                        load.create_posting(),
                        apis.postings.get(f"/postings/{load.targets[0]}", headers=EMPLOYER),
                        load.apply(),
                        asyncio.gather(*(client.get("/readyz") for client in apis.all)),
                    )
                    probed_s = time.monotonic() - stopped_at
                    await asyncio.sleep(max(0.0, 10 - probed_s))
                finally:
                    os.kill(mongo_pid, signal.SIGCONT)
                    resumed_at = time.monotonic()

                await eventually(lambda: all_ready(apis), timeout_s=60)
                ready_s = time.monotonic() - resumed_at
                await asyncio.sleep(4)  # acknowledged requests after the fault

        found, complete_at = await settle(load.answers, stores, servers.kafka_bootstrap)

    fault_report(
        fault="database SIGSTOP",
        stopped_s=round(resumed_at - stopped_at, 1),
        probes_answered_s=round(probed_s, 1),
        refused_503=found.statuses.get(503, 0),
        **found.figures(),
        recovery_ready_s=round(ready_s, 1),
        recovery_effects_s=round(complete_at - resumed_at, 1),
    )
    assert_unavailable(created.response, "POST /postings")
    assert_unavailable(read, "GET /postings/{id}")
    assert_unavailable(applied.response, "POST /postings/{id}/applications")
    for response in readiness:
        body = assert_unavailable(response, "GET /readyz")
        assert body["checks"]["mongodb"] != "ok", body
        assert "mongodb" in body["detail"], body
    assert set(found.statuses) <= {201, 503}, found.statuses
    assert found.acknowledged > 0, found.statuses
    assert found.lost == [], found.lost
    assert found.doubled == [], found.doubled
    assert found.half_written == [], found.half_written

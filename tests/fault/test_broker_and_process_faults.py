"""Faults under load: the real services (HTTP and Kafka) on the local stack, a real process
signal, recovery left to the system, then every acknowledged request checked end to end.

How each fault is injected:
- Kafka: SIGKILL of the broker process (its pid from the local stack) for ~10 s in the middle of
  a paced stream of applications; `stack.sh start` brings it back on the same data.
- notifications: SIGKILL of the service process while it consumes a burst of
  `application.submitted`; started again on the same database and consumer group.
- applications: SIGTERM during load (a graceful shutdown, as Kubernetes sends it); started again
  once it has exited.

The load is many candidates applying (tests/support/load.py), each retried with its own
Idempotency-Key after a refused connection, a time-out or a 5xx. For every application
acknowledged with 201 there must be exactly one distinct `application.submitted` event id on the
topic (the same id twice on the wire is allowed: consumers deduplicate on it) and exactly one
in-app confirmation for the candidate in the notifications database: nothing lost, nothing
doubled. Each test reports its figures through `fault_report`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from pymongo import AsyncMongoClient

from tests.conftest import bearer
from tests.fault.conftest import FaultReport
from tests.support.factories import posting_body
from tests.support.faults import SUBMITTED, WireTimedLoad, in_flight_at
from tests.support.kafka import Record, check_against_contract
from tests.support.load import ApplyLoad, Outcome, plan_applications
from tests.support.polling import eventually
from tests.support.servers import Servers, kafka_client
from tests.support.system import System, running_system

# Loads are modest (40 applications each): on the local stack's FerretDB every write waits its
# turn and most filters scan their collection, so each event costs more as a test goes on.
KAFKA_DOWN_S = 10.0
# Kubernetes gives the pod SHUTDOWN_TIMEOUT_S plus 5 s (after its preStop sleep) before SIGKILL.
SHUTDOWN_MARGIN_S = 5.0
# Waiting for the effects: a slow system is given time while it makes progress (on the local
# FerretDB every write is serialised), a stuck one is given up on.
EFFECTS_TIMEOUT_S = 300.0
EFFECTS_STALL_S = 60.0
# After the last expected effect, how long a wrong second one is given to show.
SETTLE_S = 5.0
# A request counts as in flight at SIGTERM if it had been written whole to a connection the
# service had accepted and was not yet answered: a kept-alive one, or one opened at least this
# long before (the closing listener resets a connection still in its backlog, unaccepted). The
# signal is sent once a request has waited this long for its answer.
SENT_BEFORE_S = 0.03


def candidate_headers(candidate_id: str) -> dict[str, str]:
    return bearer("candidate", sub=candidate_id)


@pytest.fixture
def system(base_env: dict[str, str], servers: Servers, tmp_path: Path) -> Iterator[System]:
    """The three services as processes on fresh databases. Whatever a test killed on the
    local stack is running again before they stop, and for the rest of the session."""
    if servers.stack_dir is None:
        pytest.fail("fault tests signal the servers' processes: run them on the local stack")
    with running_system(base_env, tmp_path, database_suffix=uuid.uuid4().hex[:8]) as running:
        try:
            yield running
        finally:
            servers.stack("start")


# ------------------------------------------------------------------------------ set-up


async def open_postings(system: System, count: int, *, run: str) -> list[str]:
    """`count` postings, published and known to the applications service's read model."""
    employer = bearer("employer", sub=f"emp-{run}", org=f"org-{run}")
    posting_ids = []
    async with httpx.AsyncClient(base_url=system.url("postings"), timeout=10) as postings:
        for index in range(count):
            created = await postings.post(
                "/postings", json=posting_body(title=f"Platform Engineer {index}"), headers=employer
            )
            assert created.status_code == 201, created.text
            posting_ids.append(created.json()["posting_id"])
    async with httpx.AsyncClient(base_url=system.url("applications"), timeout=10) as client:
        for posting_id in posting_ids:
            await apply_once_known(client, posting_id)
    return posting_ids


async def apply_once_known(client: httpx.AsyncClient, posting_id: str) -> None:
    """Apply with a probe candidate until the posting is in the read model (no more 404)."""
    probe = plan_applications([posting_id], 1, run=f"probe-{posting_id}")[0]

    async def applied() -> httpx.Response | None:
        response = await client.post(
            f"/postings/{posting_id}/applications",
            json=probe.body,
            headers=candidate_headers(probe.candidate_id),
        )
        return response if response.status_code != 404 else None  # not known yet

    answer = await eventually(applied, timeout_s=60, every_s=1.0)
    assert answer.status_code == 201, answer.text


# ------------------------------------------------------------------------------ effects


async def submitted_on_topic(bootstrap: str) -> dict[str, set[str]]:
    """Every `application.submitted` on the topic up to its current end: application id ->
    the distinct event ids published for it."""
    consumer = AIOKafkaConsumer(
        SUBMITTED, **kafka_client(bootstrap), group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    events: dict[str, set[str]] = defaultdict(set)
    ends: dict[TopicPartition, int] = {}
    try:
        async with asyncio.timeout(60):
            while not ends or [p for p, end in ends.items() if await consumer.position(p) < end]:
                batch = await consumer.getmany(timeout_ms=500)
                if not ends and consumer.assignment():  # every partition, without a group
                    ends = await consumer.end_offsets(list(consumer.assignment()))
                for messages in batch.values():
                    for m in messages:
                        record = Record(
                            topic=m.topic,
                            key=m.key,
                            value=m.value,
                            headers={k: v.decode() for k, v in m.headers},
                            partition=m.partition,
                            offset=m.offset,
                        )
                        check_against_contract(record)
                        event = record.json()
                        events[event["data"]["application_id"]].add(event["id"])
    finally:
        await consumer.stop()
    return events


@dataclass(frozen=True)
class CandidateNotifications:
    counts: Counter[tuple[str, str]]  # (recipient, application id) -> in-app notifications
    last_created_at: datetime | None

    def of(self, outcome: Outcome) -> int:
        return self.counts[(f"user:{outcome.planned.candidate_id}", str(outcome.application_id))]


async def candidate_notifications(
    mongo: AsyncMongoClient[dict[str, Any]], system: System, outcomes: Sequence[Outcome]
) -> CandidateNotifications:
    """The in-app `application.submitted` confirmations the candidates of `outcomes` hold."""
    recipients = [f"user:{outcome.planned.candidate_id}" for outcome in outcomes]
    found = mongo[system.databases["notifications"]]["notifications"].find(
        {"kind": SUBMITTED, "channel": "in_app", "recipient": {"$in": recipients}},
        projection={"recipient": 1, "subject": 1, "created_at": 1},
    )
    counts: Counter[tuple[str, str]] = Counter()
    last: datetime | None = None
    async for document in found:
        counts[(document["recipient"], document["subject"])] += 1
        last = max(last or document["created_at"], document["created_at"])
    return CandidateNotifications(counts, last)


async def wait_until_notified(
    mongo: AsyncMongoClient[dict[str, Any]], system: System, acknowledged: Sequence[Outcome]
) -> None:
    """Until every acknowledged application's candidate holds a confirmation; gives up (and
    the caller's counts say what is missing) when no new one came for EFFECTS_STALL_S, or after
    EFFECTS_TIMEOUT_S."""
    notified, progressed = -1, time.monotonic()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(EFFECTS_TIMEOUT_S):
            while time.monotonic() - progressed < EFFECTS_STALL_S:
                found = await candidate_notifications(mongo, system, acknowledged)
                now_notified = sum(1 for outcome in acknowledged if found.of(outcome))
                if now_notified == len(acknowledged):
                    return
                if now_notified > notified:
                    notified, progressed = now_notified, time.monotonic()
                await asyncio.sleep(1.0)


@dataclass(frozen=True)
class Tally:
    requests_sent: int
    acknowledged: int
    events: int  # distinct application.submitted ids of the acknowledged applications
    notifications: int  # their candidates' in-app confirmations
    lost: int  # acknowledged, but without its event or its confirmation
    doubled: int  # acknowledged, with two event ids or two confirmations
    recovery_s: float  # from the restart to the last expected confirmation


async def check_every_acknowledged(
    system: System,
    servers: Servers,
    mongo: AsyncMongoClient[dict[str, Any]],
    outcomes: Sequence[Outcome],
    *,
    restarted_at: datetime,
) -> Tally:
    """Wait for every acknowledged application's effects, give a wrong second effect time to
    show, then count events and confirmations per application."""
    acknowledged = [outcome for outcome in outcomes if outcome.acknowledged]
    await wait_until_notified(mongo, system, acknowledged)
    await asyncio.sleep(SETTLE_S)
    notified = await candidate_notifications(mongo, system, acknowledged)
    events = await submitted_on_topic(servers.kafka_bootstrap)

    def event_ids(outcome: Outcome) -> set[str]:
        return events.get(str(outcome.application_id), set())

    last = notified.last_created_at
    return Tally(
        requests_sent=len(outcomes),
        acknowledged=len(acknowledged),
        events=sum(len(event_ids(o)) for o in acknowledged),
        notifications=sum(notified.of(o) for o in acknowledged),
        lost=sum(1 for o in acknowledged if not event_ids(o) or not notified.of(o)),
        doubled=sum(1 for o in acknowledged if len(event_ids(o)) > 1 or notified.of(o) > 1),
        recovery_s=round(max(0.0, (last - restarted_at).total_seconds()), 1) if last else -1.0,
    )


def assert_nothing_lost_or_doubled(tally: Tally, system: System) -> None:
    assert tally.acknowledged > 0, "no request was acknowledged: the load never got through"
    logs = "\n".join(process.tail(10) for process in system.processes.values())
    assert tally.lost == 0, f"{tally}\n{logs}"
    assert tally.doubled == 0, f"{tally}\n{logs}"


# ------------------------------------------------------------------------------ tests


async def test_kafka_killed_mid_stream_loses_and_doubles_nothing(
    system: System,
    servers: Servers,
    mongo: AsyncMongoClient[dict[str, Any]],
    fault_report: FaultReport,
) -> None:
    run = uuid.uuid4().hex[:8]
    posting_ids = await open_postings(system, 2, run=run)
    load = ApplyLoad(
        system.url("applications"),
        plan_applications(posting_ids, 40, run=run),
        candidate_headers,
        concurrency=4,
        interval_s=0.3,  # ~12 s of requests: the outage lands in the middle
    )
    async with load.running() as sending:
        await load.wait_acknowledged(15)
        os.kill(servers.pid("kafka"), signal.SIGKILL)
        try:
            await asyncio.sleep(KAFKA_DOWN_S)
        finally:
            restarted_at = datetime.now(UTC)
            await asyncio.to_thread(servers.stack, "start")
        outcomes = await sending

    tally = await check_every_acknowledged(
        system, servers, mongo, outcomes, restarted_at=restarted_at
    )
    fault_report(**asdict(tally))
    assert_nothing_lost_or_doubled(tally, system)


async def test_notifications_killed_mid_batch_notify_each_candidate_once(
    system: System,
    servers: Servers,
    mongo: AsyncMongoClient[dict[str, Any]],
    fault_report: FaultReport,
) -> None:
    run = uuid.uuid4().hex[:8]
    posting_ids = await open_postings(system, 2, run=run)
    load = ApplyLoad(
        system.url("applications"),
        plan_applications(posting_ids, 40, run=run),
        candidate_headers,
        concurrency=8,
        # Spread over ~4 s: notifications takes whatever has arrived as one batch, so a
        # burst could be stored whole before the kill; this way the kill lands mid-stream.
        interval_s=0.1,
    )
    notifications = system.processes["notifications"]

    async def consuming_the_burst() -> int | None:
        found = await candidate_notifications(mongo, system, load.acknowledged)
        notified = sum(found.counts.values())
        return notified if notified >= len(load.plans) // 4 else None

    async with load.running() as sending:
        notified_at_kill = await eventually(consuming_the_burst, timeout_s=90, every_s=0.25)
        assert notifications.process is not None
        notifications.process.kill()  # SIGKILL: no shutdown, no offset commit
        notifications.process.wait()
        restarted_at = datetime.now(UTC)
        notifications.start()  # same database and consumer group
        await asyncio.to_thread(notifications.wait_ready)
        outcomes = await sending

    tally = await check_every_acknowledged(
        system, servers, mongo, outcomes, restarted_at=restarted_at
    )
    fault_report(**asdict(tally), notified_at_kill=notified_at_kill)
    assert notified_at_kill < tally.acknowledged, "the kill came after the burst was consumed"
    assert_nothing_lost_or_doubled(tally, system)


async def test_applications_sigterm_finishes_in_flight_and_loses_nothing(
    system: System,
    servers: Servers,
    mongo: AsyncMongoClient[dict[str, Any]],
    base_env: dict[str, str],
    fault_report: FaultReport,
) -> None:
    run = uuid.uuid4().hex[:8]
    posting_ids = await open_postings(system, 2, run=run)
    load = WireTimedLoad(
        system.url("applications"),
        plan_applications(posting_ids, 40, run=run),
        candidate_headers,
        concurrency=10,
        interval_s=0.0,  # a burst: requests queue in the service, some are in flight
    )
    applications = system.processes["applications"]
    grace_s = float(base_env["SHUTDOWN_TIMEOUT_S"])
    async with load.running() as sending:
        await load.wait_acknowledged(10, in_flight_for_s=SENT_BEFORE_S)
        assert applications.process is not None
        terminated = time.monotonic()
        applications.process.send_signal(signal.SIGTERM)
        try:
            exit_code = await asyncio.to_thread(
                applications.process.wait, grace_s + SHUTDOWN_MARGIN_S
            )
        except subprocess.TimeoutExpired:
            pytest.fail(
                f"applications still running {grace_s + SHUTDOWN_MARGIN_S} s after SIGTERM "
                f"(SHUTDOWN_TIMEOUT_S={grace_s}):\n{applications.tail()}"
            )
        exited_after_s = time.monotonic() - terminated
        shutdown_log = applications.log_path.read_text(errors="replace")
        answered_before_exit = list(load.acknowledged)
        on_topic_at_exit = await submitted_on_topic(servers.kafka_bootstrap)

        restarted_at = datetime.now(UTC)
        applications.start()
        await asyncio.to_thread(applications.wait_ready)
        outcomes = await sending

    attempts = [attempt for outcome in outcomes for attempt in outcome.attempts]
    in_flight = in_flight_at(terminated, attempts, opened_before_s=SENT_BEFORE_S)
    unpublished_at_exit = [
        str(o.application_id)
        for o in answered_before_exit
        if str(o.application_id) not in on_topic_at_exit
    ]
    tally = await check_every_acknowledged(
        system, servers, mongo, outcomes, restarted_at=restarted_at
    )
    fault_report(
        **asdict(tally),
        exit_code=exit_code,
        exited_after_s=round(exited_after_s, 1),
        in_flight_at_sigterm=len(in_flight),
        in_flight_answers=dict(Counter(str(a.status or a.error) for a in in_flight)),
        retried_after=dict(Counter(a.retry_reason for a in attempts if a.retry_reason)),
        answered_before_exit=len(answered_before_exit),
        unpublished_at_exit=len(unpublished_at_exit),
    )
    # uvicorn re-raises the SIGTERM it handled once shutdown is complete: -15 is a clean exit
    # when the service logged the end of its shutdown.
    assert exit_code in (0, -signal.SIGTERM), shutdown_log[-3000:]
    assert "service.stopped" in shutdown_log, shutdown_log[-3000:]
    assert in_flight, "SIGTERM found no request in flight"
    assert [a.status for a in in_flight] == [201] * len(in_flight), in_flight
    assert_nothing_lost_or_doubled(tally, system)
    assert not unpublished_at_exit, (
        f"{len(unpublished_at_exit)} of the {len(answered_before_exit)} applications answered "
        f"201 before the graceful exit had no event on the topic once the process had exited "
        f"(the restarted process's outbox sweep published them): {unpublished_at_exit[:5]}"
    )

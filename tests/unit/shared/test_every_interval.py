"""The background work a service runs every interval (`every_interval`): it starts with the
app, outlives a failing round, and stops with the app."""

from __future__ import annotations

import asyncio

import structlog.testing
from fastapi import FastAPI

from hirestream.shared.web.app import every_interval


async def test_the_job_runs_again_after_a_failed_round_and_stops_with_the_app() -> None:
    rounds: list[int] = []
    third_round = asyncio.Event()

    async def job() -> None:
        rounds.append(len(rounds))
        if len(rounds) == 1:
            raise ConnectionError("database away")
        if len(rounds) == 3:
            third_round.set()

    with structlog.testing.capture_logs() as logs:
        async with every_interval(0.01, job, name="sweep")(FastAPI()):
            await asyncio.wait_for(third_round.wait(), timeout=5)
        after_stop = len(rounds)
        await asyncio.sleep(0.05)

    assert len(rounds) == after_stop  # no round once the app stopped
    failures = [line for line in logs if line["event"] == "sweep.failed"]
    assert failures == [
        {"event": "sweep.failed", "error": "ConnectionError", "log_level": "warning"}
    ]

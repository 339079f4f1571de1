"""A small load driver for fault tests: many candidates apply through the real HTTP API.

Each planned application is one distinct candidate applying to one posting. Requests start at
a steady pace (so a fault injected part-way lands in the middle of the stream), at most
`concurrency` at a time. A request is retried the way a careful client retries, with the same
`Idempotency-Key`, after a connection error, a time-out or a 5xx, until `retry_for_s` has
passed since its first attempt. Every attempt is recorded (when it started and ended, and the
answer or the error); a request counts as acknowledged only if it finally got a 201, and then
its outcome holds the application id the service gave it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.support.polling import eventually

Headers = Callable[[str], dict[str, str]]
"""The authorisation headers of a candidate, given the candidate id."""


@dataclass(frozen=True)
class PlannedApplication:
    posting_id: str
    candidate_id: str
    idempotency_key: str
    body: dict[str, Any]


@dataclass(frozen=True)
class Attempt:
    started: float  # time.monotonic()
    ended: float
    status: int | None  # the HTTP status answered; None when no answer came
    error: str | None = None  # why no answer came: ConnectError, ReadTimeout, ...

    @property
    def retry_reason(self) -> str | None:
        """Why the client tries again after this attempt (None: it does not)."""
        if self.status is None:
            return self.error
        return f"HTTP {self.status}" if self.status >= 500 else None


@dataclass
class Outcome:
    planned: PlannedApplication
    application_id: str | None = None  # set only when finally acknowledged with 201
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def acknowledged(self) -> bool:
        return self.application_id is not None


def plan_applications(
    posting_ids: Sequence[str], count: int, *, run: str
) -> list[PlannedApplication]:
    """`count` applications by distinct candidates, spread over the postings in turn."""
    plans = []
    for index in range(count):
        candidate_id = f"cand-{run}-{index:03d}"
        plans.append(
            PlannedApplication(
                posting_id=posting_ids[index % len(posting_ids)],
                candidate_id=candidate_id,
                idempotency_key=str(uuid.uuid4()),
                body={
                    "name": f"Candidate {index}",
                    "email": f"{candidate_id}@example.com",
                    "resume_url": f"https://cv.example.com/{candidate_id}.pdf",
                    "consent": {"processing": True},
                    "skills": ["Python", "Kafka"],
                },
            )
        )
    return plans


@dataclass
class ApplyLoad:
    base_url: str
    plans: Sequence[PlannedApplication]
    headers: Headers
    concurrency: int = 4
    interval_s: float = 0.2  # between the starts of two planned requests
    retry_for_s: float = 60.0  # a request gives up this long after its first attempt
    request_timeout_s: float = 5.0
    outcomes: list[Outcome] = field(init=False)
    # When each attempt still waiting for its answer was sent (time.monotonic()), by request.
    _open: dict[str, float] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.outcomes = [Outcome(plan) for plan in self.plans]

    @property
    def acknowledged(self) -> list[Outcome]:
        return [outcome for outcome in self.outcomes if outcome.acknowledged]

    async def run(self) -> list[Outcome]:
        """Send every planned application; returns when each is acknowledged or given up."""
        limits = httpx.Limits(max_connections=self.concurrency)
        slots = asyncio.Semaphore(self.concurrency)
        async with httpx.AsyncClient(
            base_url=self.base_url, timeout=self.request_timeout_s, limits=limits
        ) as client:

            async def one(outcome: Outcome, start_at: float) -> None:
                await asyncio.sleep(max(0.0, start_at - time.monotonic()))
                async with slots:
                    await self._apply(client, outcome)

            began = time.monotonic()
            async with asyncio.TaskGroup() as group:
                for index, outcome in enumerate(self.outcomes):
                    group.create_task(one(outcome, began + index * self.interval_s))
        return self.outcomes

    @asynccontextmanager
    async def running(self) -> AsyncIterator[asyncio.Task[list[Outcome]]]:
        """The load runs in the background inside the block (await the task for the outcomes);
        leaving the block early stops it."""
        task = asyncio.create_task(self.run(), name="apply-load")
        try:
            yield task
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def oldest_in_flight_s(self) -> float:
        """How long the oldest attempt still waiting for its answer has been waiting (0: none)."""
        return time.monotonic() - min(self._open.values(), default=time.monotonic())

    async def wait_acknowledged(self, count: int, *, in_flight_for_s: float = 0.0) -> None:
        """Return once at least `count` requests are acknowledged and, if asked, an attempt has
        been waiting for its answer for at least `in_flight_for_s`."""

        async def ready() -> bool:
            return len(self.acknowledged) >= count and (
                not in_flight_for_s or self.oldest_in_flight_s() >= in_flight_for_s
            )

        await eventually(ready, timeout_s=60, every_s=0.005)

    async def _apply(self, client: httpx.AsyncClient, outcome: Outcome) -> None:
        plan = outcome.planned
        headers = {**self.headers(plan.candidate_id), "Idempotency-Key": plan.idempotency_key}
        deadline = time.monotonic() + self.retry_for_s
        backoff_s = 0.2
        while True:
            attempt, response = await self._attempt(client, plan, headers)
            outcome.attempts.append(attempt)
            if response is not None and response.status_code == 201:
                outcome.application_id = response.json()["application_id"]
                return
            if attempt.retry_reason is None or time.monotonic() + backoff_s > deadline:
                return  # an answer that is not a failure, or out of patience
            await asyncio.sleep(backoff_s * random.uniform(0.5, 1.0))
            backoff_s = min(backoff_s * 2, 2.0)

    async def _attempt(
        self, client: httpx.AsyncClient, plan: PlannedApplication, headers: dict[str, str]
    ) -> tuple[Attempt, httpx.Response | None]:
        started = self._open[plan.idempotency_key] = time.monotonic()
        try:
            response = await client.post(
                f"/postings/{plan.posting_id}/applications", json=plan.body, headers=headers
            )
        except httpx.TransportError as error:  # refused, reset, timed out
            return Attempt(started, time.monotonic(), None, type(error).__name__), None
        finally:
            del self._open[plan.idempotency_key]
        return Attempt(started, time.monotonic(), response.status_code), response

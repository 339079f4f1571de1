"""The load tool: a small asyncio HTTP client on aiohttp.

Why this and not locust or wrk: every request here must differ (a distinct candidate's token
and a distinct posting, or the duplicate guard answers 409), the same client must drive the
service and its bare baseline identically, and its latencies feed the result file directly.
wrk needs Lua for that and reports no per-request data; locust runs its own web UI and gevent
workers, heavier than the services on a 2-core machine. aiohttp's client costs a fraction of
httpx's CPU per request, and the client shares the two cores with the server it measures, so
its CPU time is recorded beside every figure (`client_cpu_s`), as is the server's.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bench.processes import cpu_seconds, machine_cpu_seconds
from bench.stats import Latencies


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    json: Any = None


@dataclass
class LoadReport:
    concurrency: int
    duration_s: float
    completed: int = 0
    ok: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    latencies: Latencies = field(default_factory=Latencies)
    client_cpu_s: float = 0.0
    server_cpu_s: float = 0.0
    machine_cpu_s: float = 0.0  # every process: client, server, database, broker

    @property
    def throughput(self) -> float:
        return self.ok / self.duration_s if self.duration_s else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "concurrency": self.concurrency,
            "duration_s": round(self.duration_s, 2),
            "completed": self.completed,
            "ok": self.ok,
            "throughput_per_s": round(self.throughput, 1),
            "statuses": dict(self.statuses),
            "latency": self.latencies.summary(),
            "client_cpu_s": round(self.client_cpu_s, 2),
            "server_cpu_s": round(self.server_cpu_s, 2),
            "server_cpu_ms_per_ok_request": (
                round(self.server_cpu_s * 1000 / self.ok, 3) if self.ok else None
            ),
            "machine_cpu_s": round(self.machine_cpu_s, 2),
            "machine_cpu_ms_per_ok_request": (
                round(self.machine_cpu_s * 1000 / self.ok, 3) if self.ok else None
            ),
        }


def session(base_url: str, *, connections: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        base_url=base_url,
        connector=aiohttp.TCPConnector(limit=connections, force_close=False),
        timeout=aiohttp.ClientTimeout(total=120),
    )


async def closed_loop(
    base_url: str,
    make: Callable[[int], Request],
    *,
    concurrency: int,
    warmup_s: float,
    duration_s: float,
    ok_status: int,
    server_pid: int | None = None,
) -> LoadReport:
    """`concurrency` workers, each sending its next request as soon as the last one answered.

    Requests that complete during the first `warmup_s` are not counted; then for `duration_s`
    every completed request is: throughput is the number answered `ok_status` per second.
    """
    counter = itertools.count()
    report = LoadReport(concurrency=concurrency, duration_s=duration_s)
    start = time.perf_counter()
    measure_from = start + warmup_s
    measure_to = measure_from + duration_s
    marks: dict[str, float] = {}

    async def worker(http: aiohttp.ClientSession) -> None:
        while time.perf_counter() < measure_to:
            request = make(next(counter))
            began = time.perf_counter()
            try:
                async with http.request(
                    request.method, request.path, headers=request.headers, json=request.json
                ) as response:
                    await response.read()
                    status = str(response.status)
            except (aiohttp.ClientError, TimeoutError) as error:
                status = type(error).__name__
            done = time.perf_counter()
            if measure_from <= done <= measure_to:
                report.completed += 1
                report.statuses[status] += 1
                if status == str(ok_status):
                    report.ok += 1
                    report.latencies.add(done - began)

    async def mark_window() -> None:
        await asyncio.sleep(max(0.0, measure_from - time.perf_counter()))
        marks["client"] = time.process_time()
        marks["server"] = cpu_seconds(server_pid) if server_pid else 0.0
        marks["machine"] = machine_cpu_seconds()
        await asyncio.sleep(max(0.0, measure_to - time.perf_counter()))
        report.client_cpu_s = time.process_time() - marks["client"]
        report.machine_cpu_s = machine_cpu_seconds() - marks["machine"]
        if server_pid:
            report.server_cpu_s = cpu_seconds(server_pid) - marks["server"]

    async with session(base_url, connections=concurrency) as http:
        await asyncio.gather(mark_window(), *(worker(http) for _ in range(concurrency)))
    return report


async def paced(
    rate_per_s: float, count: int, action: Callable[[int], Any], *, max_in_flight: int = 1000
) -> list[Any]:
    """Start `action(i)` at a steady rate (open loop: a slow answer does not delay the next
    start) and return the results of all of them."""
    tasks: list[asyncio.Task[Any]] = []
    start = time.perf_counter()
    for index in range(count):
        await asyncio.sleep(max(0.0, start + index / rate_per_s - time.perf_counter()))
        while sum(not task.done() for task in tasks) >= max_in_flight:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        tasks.append(asyncio.create_task(action(index)))
    return list(await asyncio.gather(*tasks))

"""Measuring: latencies, CPU time, the HTTP client, pacing, and one benchmark's result."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import psutil


def percentile(values: list[float], q: float) -> float | None:
    """Nearest rank: with fewer than 100 samples p99 is the largest (the result records n)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(max(1, math.ceil(q / 100 * len(ordered))), len(ordered)) - 1]


@dataclass
class Latencies:
    """Latencies in seconds, summarised in milliseconds."""

    samples: list[float] = field(default_factory=list)

    def add(self, seconds: float) -> None:
        self.samples.append(seconds)

    def ms(self, q: float) -> float | None:
        value = percentile(self.samples, q)
        return None if value is None else round(value * 1000, 2)

    def summary(self) -> dict[str, Any]:
        return {
            "n": len(self.samples),
            **{f"p{q}_ms": self.ms(q) for q in (50, 90, 99, 100)},
        }


def ratio(figure: float | None, baseline: float | None, digits: int = 3) -> float | None:
    return round(figure / baseline, digits) if figure is not None and baseline else None


def process_cpu_s(pid: int) -> float:
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


def machine_cpu_s() -> float:
    """CPU time all cores have spent busy so far, whatever ran."""
    times = psutil.cpu_times()
    busy = ("user", "nice", "system", "irq", "softirq", "steal")
    return float(sum(getattr(times, name, 0.0) for name in busy))


def per_unit_ms(cpu_s: float, units: int) -> float | None:
    return round(cpu_s * 1000 / units, 3) if units else None


@dataclass
class Result:
    """One benchmark: its figure, the baseline measured in the same run, and the verdict.

    `direction`: "min" passes when ratio >= goal, "max" when ratio <= goal, "at_most" when the
    figure itself is <= goal (memory); without a goal the figure is only reported.
    """

    name: str
    what: str
    unit: str
    figure: float | None
    baseline: float | None
    baseline_what: str
    goal: float | None
    direction: str
    sizes: dict[str, Any]
    details: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    ratio: float | None = field(init=False)
    met_goal: bool | None = field(init=False)

    def __post_init__(self) -> None:
        self.ratio = ratio(self.figure, self.baseline)
        value = self.figure if self.direction == "at_most" else self.ratio
        if self.goal is None or value is None:
            self.met_goal = None
        else:
            self.met_goal = value >= self.goal if self.direction == "min" else value <= self.goal

    def line(self) -> str:
        verdict = {True: "met", False: "MISSED", None: "reported"}[self.met_goal]
        return (
            f"{self.name}: {self.figure} {self.unit} vs baseline {self.baseline} -> ratio "
            f"{self.ratio} (goal {self.goal}, {self.direction}): {verdict}"
        )


def session(base_url: str, *, connections: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        base_url=base_url,
        connector=aiohttp.TCPConnector(limit=connections),
        timeout=aiohttp.ClientTimeout(total=120),
    )


async def paced(rate_per_s: float, count: int, action: Callable[[int], Awaitable[Any]]) -> None:
    """Start `action(i)` at a steady rate (open loop: a slow answer does not delay the next
    start), then wait for all of them."""
    tasks: list[asyncio.Task[Any]] = []
    start = time.perf_counter()
    for index in range(count):
        await asyncio.sleep(max(0.0, start + index / rate_per_s - time.perf_counter()))
        tasks.append(asyncio.ensure_future(action(index)))
    await asyncio.gather(*tasks)

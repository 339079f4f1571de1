"""Latency statistics and the shape of one benchmark's result."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of `values`; None when there are none.

    With n samples, p99 is the largest value once n < 100: the results record n beside it.
    """
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass
class Latencies:
    """Latencies in seconds, summarised in milliseconds."""

    samples: list[float] = field(default_factory=list)

    def add(self, seconds: float) -> None:
        self.samples.append(seconds)

    def summary(self) -> dict[str, float | int | None]:
        def ms(value: float | None) -> float | None:
            return None if value is None else round(value * 1000, 2)

        return {
            "n": len(self.samples),
            "p50_ms": ms(percentile(self.samples, 50)),
            "p90_ms": ms(percentile(self.samples, 90)),
            "p99_ms": ms(percentile(self.samples, 99)),
            "max_ms": ms(max(self.samples) if self.samples else None),
            "mean_ms": ms(sum(self.samples) / len(self.samples) if self.samples else None),
        }


@dataclass
class Result:
    """One benchmark: the figure, its baseline measured in the same run, and the verdict.

    `direction` says which way the goal points: "min" means ratio >= goal passes, "max" means
    ratio <= goal passes, "at_most" means the figure itself must be <= goal (memory), "report"
    means there is no goal, only a figure to report.
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
    ratio: float | None = None
    met_goal: bool | None = None

    def judge(self) -> Result:
        if self.figure is not None and self.baseline:
            self.ratio = round(self.figure / self.baseline, 3)
        if self.direction == "at_most" and self.goal is not None and self.figure is not None:
            self.met_goal = self.figure <= self.goal
        elif self.direction == "report" or self.goal is None or self.ratio is None:
            self.met_goal = None
        elif self.direction == "min":
            self.met_goal = self.ratio >= self.goal
        else:
            self.met_goal = self.ratio <= self.goal
        return self

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

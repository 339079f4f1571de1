"""The result file (`bench/results/<date>.json`) and its chart (`<date>.png`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display here: render straight to PNG

import matplotlib.pyplot as plt
from matplotlib.axes import Axes

Panel = Callable[[Axes, dict[str, Any]], None]
RESULTS = Path(__file__).resolve().parent / "results"
PASS, FAIL, NEUTRAL, BASE = "#2e7d32", "#c62828", "#1565c0", "#9e9e9e"


def result_paths(*, quick: bool, now: datetime | None = None) -> tuple[Path, Path]:
    """`<date>.json` (`<date>-quick.json` for --quick), numbered if that day has one already."""
    stamp = (now or datetime.now(UTC)).strftime("%Y-%m-%d") + ("-quick" if quick else "")
    RESULTS.mkdir(parents=True, exist_ok=True)
    candidate = RESULTS / f"{stamp}.json"
    number = 2
    while candidate.exists():
        candidate = RESULTS / f"{stamp}-{number}.json"
        number += 1
    return candidate, candidate.with_suffix(".png")


def write_json(path: Path, report: dict[str, Any]) -> None:
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")


def _colour(result: dict[str, Any]) -> str:
    met = result.get("met_goal")
    return NEUTRAL if met is None else (PASS if met else FAIL)


def _title(result: dict[str, Any]) -> str:
    ratio, goal = result.get("ratio"), result.get("goal")
    verdict = {True: "met", False: "MISSED", None: "reported"}[result.get("met_goal")]
    goal_text = ""
    if goal is not None:
        goal_text = {"min": f" (goal ≥ {goal})", "max": f" (goal ≤ {goal} times)"}.get(
            result["direction"], ""
        )
    ratio_text = f"ratio {ratio}" if ratio is not None else "no ratio"
    return f"{result['name']}: {ratio_text}{goal_text} — {verdict}"


def _pair(axes: Axes, result: dict[str, Any], labels: tuple[str, str]) -> None:
    values = [result.get("figure") or 0.0, result.get("baseline") or 0.0]
    bars = axes.bar(list(labels), values, color=[_colour(result), BASE])
    axes.bar_label(bars, labels=[f"{value:,.1f}" for value in values], fontsize=8)
    axes.set_ylabel(result["unit"])
    axes.set_title(_title(result), fontsize=9)


def _search(axes: Axes, result: dict[str, Any]) -> None:
    mixes = result["details"]["mixes"]
    names = list(mixes)
    http = [mixes[name]["http"]["p99_ms"] or 0.0 for name in names]
    direct = [mixes[name]["direct"]["p99_ms"] or 0.0 for name in names]
    positions = range(len(names))
    axes.bar([p - 0.2 for p in positions], http, width=0.4, color=_colour(result), label="HTTP")
    axes.bar([p + 0.2 for p in positions], direct, width=0.4, color=BASE, label="direct find")
    axes.set_xticks(list(positions), names, rotation=35, ha="right", fontsize=7)
    axes.set_ylabel("p99 ms (log)")
    axes.set_yscale("log")
    axes.legend(fontsize=7)
    axes.set_title(_title(result), fontsize=9)


def _memory(axes: Axes, result: dict[str, Any]) -> None:
    peaks = result["details"]["peak_rss_mib"]
    names = list(peaks)
    values = [peaks[name] for name in names]
    colours = [PASS if value <= (result["goal"] or 0) else FAIL for value in values]
    bars = axes.bar(names, values, color=colours)
    axes.bar_label(bars, labels=[f"{value:.0f}" for value in values], fontsize=8)
    axes.axhline(result["goal"], color="black", linestyle="--", linewidth=1)
    axes.set_xticks(range(len(names)), names, rotation=20, ha="right", fontsize=7)
    axes.set_ylabel("peak RSS MiB")
    axes.set_title(f"memory: peak RSS (goal ≤ {result['goal']} MiB each)", fontsize=9)


def write_chart(path: Path, report: dict[str, Any]) -> None:
    results = {result["name"]: result for result in report["results"]}
    figure, grid = plt.subplots(2, 3, figsize=(16, 9))
    axes_list: list[Axes] = list(grid.flat)
    panels: list[tuple[str, Panel]] = [
        ("post_application", lambda ax, r: _pair(ax, r, ("service", "bare insert"))),
        ("e2e_latency", lambda ax, r: _pair(ax, r, ("201 → inbox", "raw Kafka"))),
        ("drain", lambda ax, r: _pair(ax, r, ("service", "raw bulk"))),
        ("search", _search),
        ("kafka_ceiling", lambda ax, r: _pair(ax, r, ("aiokafka", "ProducerPerf"))),
        ("memory", _memory),
    ]
    for axes, (name, draw) in zip(axes_list, panels, strict=True):
        if name in results:
            draw(axes, results[name])
        else:
            axes.set_axis_off()
            axes.set_title(f"{name}: not run", fontsize=9)
    machine = report["machine"]
    database = machine["database"]
    figure.suptitle(
        f"hirestream benchmarks {report['started_at'][:16]}Z — {machine['nproc']} cores, "
        f"{machine['memory_gib']} GiB, {database['kind']} {database.get('version')}, "
        f"Kafka {machine['kafka']['version']}"
        f"{' — QUICK' if report['quick'] else ''} — {machine['shared'].split(':')[0]}",
        fontsize=11,
    )
    figure.tight_layout(rect=(0, 0, 1, 0.96))
    figure.savefig(path, dpi=100)
    plt.close(figure)

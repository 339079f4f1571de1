"""The report: `bench/results/<date>.json` and its chart `<date>.png`."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: straight to PNG

import matplotlib.pyplot as plt
from matplotlib.axes import Axes

RESULTS = Path(__file__).resolve().parent / "results"
PASS, FAIL, NEUTRAL, BASE = "#2e7d32", "#c62828", "#1565c0", "#9e9e9e"
PANELS = {  # benchmark -> (our bar, the baseline's bar)
    "post_application": ("service", "bare insert"),
    "e2e_latency": ("201 → inbox", "raw Kafka"),
    "drain": ("service", "raw consumer"),
    "search": ("HTTP", "direct find"),
    "kafka_ceiling": ("aiokafka", "ProducerPerf"),
    "memory": ("", ""),
}


def result_paths(*, quick: bool) -> tuple[Path, Path]:
    """`<date>.json` (`<date>-quick.json`), numbered when that day has one already."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%d") + ("-quick" if quick else "")
    RESULTS.mkdir(parents=True, exist_ok=True)
    path, number = RESULTS / f"{stamp}.json", 2
    while path.exists():
        path, number = RESULTS / f"{stamp}-{number}.json", number + 1
    return path, path.with_suffix(".png")


def _colour(result: dict[str, Any]) -> str:
    return {True: PASS, False: FAIL, None: NEUTRAL}[result["met_goal"]]


def _title(result: dict[str, Any]) -> str:
    verdict = {True: "met", False: "MISSED", None: "reported"}[result["met_goal"]]
    goal = {"min": " ≥ ", "max": " ≤ ", "at_most": " ≤ "}.get(result["direction"])
    goal_text = f" (goal{goal}{result['goal']})" if goal and result["goal"] is not None else ""
    if result["name"] == "memory":
        return f"memory: peak RSS MiB{goal_text} — {verdict}"
    return f"{result['name']}: ratio {result['ratio']}{goal_text} — {verdict}"


def _pair(axes: Axes, result: dict[str, Any]) -> None:
    ours, theirs = PANELS[result["name"]]
    values = [result["figure"] or 0.0, result["baseline"] or 0.0]
    bars = axes.bar([ours, theirs], values, color=[_colour(result), BASE])
    axes.bar_label(bars, labels=[f"{value:,.1f}" for value in values], fontsize=8)
    axes.set_ylabel(result["unit"])
    if ceiling := result["details"].get("ceiling"):
        label = f"guarantees' writes alone: best ratio {ceiling['best_ratio']}"
        axes.axhline(ceiling["writes_alone_per_s"], color="black", linestyle="--", label=label)
        axes.legend(fontsize=7, loc="upper left")


def _search(axes: Axes, result: dict[str, Any]) -> None:
    mixes = result["details"]["mixes"]
    positions = list(range(len(mixes)))
    for side, offset, colour in (("http", -0.2, _colour(result)), ("direct", 0.2, BASE)):
        values = [mix[side]["p99_ms"] or 0.0 for mix in mixes.values()]
        label = PANELS["search"][side == "direct"]
        axes.bar([p + offset for p in positions], values, width=0.4, color=colour, label=label)
    axes.set_xticks(positions, list(mixes), rotation=35, ha="right", fontsize=7)
    axes.set_ylabel("p99 ms")
    axes.legend(fontsize=7)


def _memory(axes: Axes, result: dict[str, Any]) -> None:
    peaks = result["details"]["peak_rss_mib"]
    colours = [PASS if value <= result["goal"] else FAIL for value in peaks.values()]
    bars = axes.bar(list(peaks), list(peaks.values()), color=colours)
    axes.bar_label(bars, labels=[f"{value:.0f}" for value in peaks.values()], fontsize=8)
    axes.axhline(result["goal"], color="black", linestyle="--", linewidth=1)
    axes.tick_params(axis="x", labelsize=7)


def write(report: dict[str, Any], *, quick: bool) -> tuple[Path, Path]:
    json_path, png_path = result_paths(quick=quick)
    json_path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    results = {result["name"]: result for result in report["results"]}
    figure, grid = plt.subplots(2, 3, figsize=(16, 9))
    for axes, name in zip(grid.flat, PANELS, strict=True):
        if name not in results:
            axes.set_axis_off()
            axes.set_title(f"{name}: not run", fontsize=9)
            continue
        draw = {"search": _search, "memory": _memory}.get(name, _pair)
        draw(axes, results[name])
        axes.set_title(_title(results[name]), fontsize=9)
    machine = report["machine"]
    figure.suptitle(
        f"hirestream benchmarks {report['started_at'][:16]}Z{' (quick)' if quick else ''} — "
        f"{machine['nproc']} cores, {machine['database']['kind']} "
        f"{machine['database']['version']}, Kafka {machine['kafka']} — 1-minute load at start "
        f"{machine['load_average_at_start'][0]}",
        fontsize=11,
    )
    figure.tight_layout(rect=(0, 0, 1, 0.96))
    figure.savefig(png_path, dpi=100)
    plt.close(figure)
    return json_path, png_path

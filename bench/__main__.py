"""`python -m bench [--quick] [--only NAME ...] [--profile TARGET] [--SIZE VALUE ...]`

Starts its own local stack (`.stack/bench/stack`, free ports), runs every benchmark beside its
baseline in the same run, profiles the slowest path, and writes `bench/results/<date>.json`
and `<date>.png`. `bench/run.sh` does the set-up first (virtualenv, jars, database server).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from datetime import UTC, datetime
from typing import Any

from bench import drain, e2e, floor, kafka_ceiling, post, search
from bench.config import BENCHMARKS, Sizes, add_arguments, chosen
from bench.data import SEARCH_MIXES
from bench.environment import BENCH_STATE, Bench, bench_stack, create_postings, machine
from bench.kafka import committed, ensure_topics, skip_to_end
from bench.post import BASELINE_LABEL
from bench.processes import BenchProcess
from bench.profiling import Profiler, database_probe, summarise_collapsed
from bench.report import result_paths, write_chart, write_json
from bench.stats import Result
from hirestream.applications.store import APPLICATIONS
from hirestream.notifications.consumers import GROUP_ID as NOTIFICATIONS_GROUP
from hirestream.notifications.store import NOTIFICATIONS
from hirestream.postings.store import COLLECTION as POSTINGS
from hirestream.shared.events.applications import APPLICATION_STATUS_CHANGED, APPLICATION_SUBMITTED
from hirestream.shared.events.postings import POSTING_CREATED
from hirestream.shared.logging import configure_logging
from hirestream.shared.settings import LogFormat

MEMORY_GOAL_MIB = 150.0
SERVICES = ("postings", "applications", "notifications")
PROFILE_TARGETS = ("auto", "drain", "post", "e2e", "search", "none")
# The service whose code a benchmark's path runs through, for profiling.
SERVICE_OF = {
    "drain": "notifications",
    "post_application": "applications",
    "e2e_latency": "notifications",
    "search": "postings",
}


def shared_note(load_1min: float, cores: int) -> str:
    """Whether other work shared the machine when the run began (its 1-minute load)."""
    if load_1min < cores / 2:
        return f"quiet at start: 1-minute load {load_1min} on {cores} cores"
    return f"busy at start: 1-minute load {load_1min} on {cores} cores, other work shared them"


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


async def skip_notifications_backlog(bench: Bench) -> None:
    """Whatever the notifications group has not read yet (events of earlier benchmarks) is
    not the next benchmark's business."""
    for event_type in (APPLICATION_SUBMITTED, APPLICATION_STATUS_CHANGED, POSTING_CREATED):
        await ensure_topics(bench.servers.kafka_bootstrap, [event_type.topic])
        await skip_to_end(bench.servers.kafka_bootstrap, NOTIFICATIONS_GROUP, event_type.topic)


async def post_and_e2e(bench: Bench, sizes: Sizes, selected: set[str]) -> list[Result]:
    results: list[Result] = []
    bench.memory.phase = "post/e2e setup"
    postings = bench.start(bench.service("postings", database=bench.database("postings")))
    try:
        if "post" in selected:
            say("post: applications + postings up; publishing postings")
            database = bench.database("applications_post")
            applications = bench.start(bench.service("applications", database=database))
            ids = await create_postings(
                bench, postings.url, database, sizes.post_postings, org="acme-post"
            )
            bench.memory.phase = "post"
            say(f"post: {sizes.post_concurrency} workers, baseline then service")
            results.append(
                await post.run(
                    bench,
                    applications,
                    ids,
                    concurrency=sizes.post_concurrency,
                    warmup_s=sizes.post_warmup_s,
                    duration_s=sizes.post_duration_s,
                )
            )
            say(_line(results[-1]))
            bench.stop(applications)
            bench.memory.phase = "post: floor"
            writes = await floor.post_writes(bench, requests=sizes.floor_units)
            add_ceiling(results[-1], writes)
        if "e2e" in selected:
            bench.memory.phase = "e2e setup"
            await skip_notifications_backlog(bench)
            database = bench.database("applications_e2e")
            applications = bench.start(bench.service("applications", database=database))
            notifications_db = bench.database("notifications_e2e")
            notifications = bench.start(bench.service("notifications", database=notifications_db))
            ids = await create_postings(bench, postings.url, database, 5, org="acme-e2e")
            bench.memory.phase = "e2e"
            say(f"e2e: {sizes.e2e_rate_per_s}/s for {sizes.e2e_duration_s:.0f} s, raw Kafka first")
            results.append(
                await e2e.run(
                    bench,
                    applications.url,
                    ids,
                    rate=sizes.e2e_rate_per_s,
                    duration_s=sizes.e2e_duration_s,
                    settle_s=sizes.e2e_settle_s,
                )
            )
            say(_line(results[-1]))
            bench.stop(notifications)
            bench.stop(applications)
    finally:
        bench.stop(postings)
    return results


def add_ceiling(result: Result, writes: dict[str, Any]) -> None:
    """The best ratio the guarantees' writes leave on this database server (bench/floor.py)."""
    ceiling = result.details["ceiling"] = floor.ceiling(result.baseline, writes)
    say(
        f"{result.name}: the database server takes {ceiling['writes_alone_per_s']} units/s "
        f"of the guarantees' writes alone: a ratio of at most {ceiling['best_ratio']} "
        f"(goal {result.goal})"
    )


def memory_result(bench: Bench, phases: list[str]) -> Result:
    peaks = {label: round(peak.peak_mib, 1) for label, peak in bench.memory.peaks.items()}
    services = {label: value for label, value in peaks.items() if label in SERVICES}
    others = {label: value for label, value in peaks.items() if label not in SERVICES}
    baseline = peaks.get(BASELINE_LABEL)
    worst = max(services, key=lambda label: services[label]) if services else None
    return Result(
        name="memory",
        what="peak RSS of each service under the benchmarks above (largest shown as figure)",
        unit="MiB",
        figure=services[worst] if worst else None,
        baseline=baseline,
        baseline_what="peak RSS of the bare FastAPI + PyMongo insert app under the same load",
        goal=MEMORY_GOAL_MIB,
        direction="at_most",
        sizes={"sampled_every_s": bench.memory.interval_s, "phases": phases},
        details={
            "peak_rss_mib": services,
            "worst": worst,
            "by_phase_mib": {
                label: {phase: round(value, 1) for phase, value in peak.by_phase.items()}
                for label, peak in bench.memory.peaks.items()
            },
            "all_services_within_goal": all(v <= MEMORY_GOAL_MIB for v in services.values()),
            "other_processes_peak_rss_mib": others,
        },
    ).judge()


def slowest(results: list[Result]) -> str | None:
    """The benchmark furthest from (or closest to missing) its goal, among those that run
    through a service."""
    shortfall: dict[str, float] = {}
    for result in results:
        if result.name not in SERVICE_OF or result.ratio is None or result.goal is None:
            continue
        if result.direction == "min":
            shortfall[result.name] = result.goal / result.ratio if result.ratio else float("inf")
        elif result.direction == "max":
            shortfall[result.name] = result.ratio / result.goal
    return max(shortfall, key=lambda name: shortfall[name]) if shortfall else None


async def profile(
    bench: Bench, name: str, sizes: Sizes, *, use_pyinstrument: bool
) -> dict[str, Any]:
    """Run the service side of benchmark `name` again for `profile_s` with a profiler on it,
    then probe the database with the queries that path sends."""
    target = SERVICE_OF[name]
    out_dir = BENCH_STATE / "profiles"
    out_dir.mkdir(parents=True, exist_ok=True)
    tag = f"{bench.run_id}-{name}"
    bench.profiler = Profiler(target, out_dir, tag, use_pyinstrument=use_pyinstrument)
    bench.memory.phase = f"profile {name}"
    probe: dict[str, Any] = {}
    client = bench.mongo()
    try:
        if name in ("drain", "e2e_latency"):
            await skip_notifications_backlog(bench)
            events = max(500, int(sizes.profile_s * 200))
            await drain.produce_backlog(bench, events)
            database = bench.database("notifications_profile")
            process = bench.start(bench.service("notifications", database=database))
            await _run_for(bench, sizes.profile_s, process, drain_group=True)
            probe = await database_probe(client[database][NOTIFICATIONS])
            bench.stop(process)
            await skip_notifications_backlog(bench)
        elif name == "post_application":
            postings = bench.start(bench.service("postings", database=bench.database("postings")))
            database = bench.database("applications_profile")
            applications = bench.start(bench.service("applications", database=database))
            ids = await create_postings(bench, postings.url, database, 5, org="acme-profile")
            await post.measure(
                bench,
                applications.url,
                applications.pid,
                ids,
                tag="profile",
                concurrency=sizes.post_concurrency,
                warmup_s=0,
                duration_s=sizes.profile_s,
            )
            probe = await database_probe(client[database][APPLICATIONS])
            bench.stop(applications)
            bench.stop(postings)
        elif name == "search":
            database = bench.database("postings_search")
            process = bench.start(bench.service("postings", database=database))
            deadline = time.monotonic() + sizes.profile_s
            for mix in SEARCH_MIXES:
                if time.monotonic() > deadline:
                    break
                await search.measure_mix(
                    bench, process.url, database, mix, requests=len(mix.params), max_s=10
                )
            probe = await database_probe(client[database][POSTINGS])
            bench.stop(process)
    finally:
        await client.close()
        profiler, bench.profiler = bench.profiler, None
    summaries: dict[str, Any] = {}
    for output in profiler.outputs:
        if output.name.endswith(".pyspy.txt") and output.exists():
            summaries[output.name] = summarise_collapsed(output)
        elif output.name.endswith(".dbtrace.json") and output.exists():
            commands = json.loads(output.read_text())["commands"]
            summaries[output.name] = {
                "database_time_s": round(sum(row["total_s"] for row in commands), 2),
                "top_commands_by_total_time": commands[:15],
            }
    return {
        "benchmark": name,
        "service": target,
        "tool": "pyinstrument" if use_pyinstrument else "py-spy (attached, --nonblocking, 100 Hz)",
        "outputs": [str(path) for path in profiler.outputs],
        "errors": profiler.errors,
        "summary": summaries,
        "database_probe": probe,
    }


async def _run_for(
    bench: Bench, seconds: float, process: BenchProcess, *, drain_group: bool
) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.process and process.process.poll() is None:  # noqa: ASYNC110
        await asyncio.sleep(1)
    if drain_group:
        offsets = await committed(bench.servers.kafka_bootstrap, NOTIFICATIONS_GROUP, drain.TOPIC)
        say(f"profile: notifications committed {sum(offsets.values())} offsets so far")


def _line(result: Result) -> str:
    verdict = {True: "met", False: "MISSED", None: "reported"}[result.met_goal]
    return (
        f"{result.name}: {result.figure} {result.unit} vs baseline {result.baseline} -> "
        f"ratio {result.ratio} (goal {result.goal}, {result.direction}): {verdict}"
    )


async def main_async(args: argparse.Namespace) -> int:
    selected = set(args.only or BENCHMARKS)
    started_at = datetime.now(UTC)
    results: list[Result] = []
    report: dict[str, Any] = {}
    say(f"starting the bench stack in {BENCH_STATE / 'stack'}")
    with bench_stack() as servers:
        bench = Bench(servers)
        bench.memory.start()
        try:
            bench.memory.watch("database server", servers.pid("mongo"))
            bench.memory.watch("kafka broker", servers.pid("kafka"))
            # The local SMTP catcher receives every email the drain sends: its CPU comes off
            # the same two cores (in production the mail server runs elsewhere).
            bench.memory.watch("mail catcher", servers.pid("smtp"))
            info = await machine(servers)
            sizes, notes = chosen(args, database_kind=info["database"]["kind"])
            say(f"database {info['database']}, Kafka {info['kafka']['version']}; sizes {sizes}")
            phases: list[str] = []
            if "drain" in selected:
                bench.memory.phase = "drain"
                phases.append("drain")
                say(f"drain: producing {sizes.drain_events} events, raw drain, then the service")
                results.append(
                    await drain.run(bench, events=sizes.drain_events, max_s=sizes.drain_max_s)
                )
                say(_line(results[-1]))
                bench.memory.phase = "drain: floor"
                writes = await floor.drain_writes(bench, events=sizes.floor_units)
                add_ceiling(results[-1], writes)
            if "kafka" in selected:
                bench.memory.phase = "kafka"
                say(f"kafka: ProducerPerformance and aiokafka, {sizes.kafka_records} records")
                results.append(
                    await kafka_ceiling.run(
                        bench, records=sizes.kafka_records, size=sizes.kafka_record_size
                    )
                )
                say(_line(results[-1]))
            if selected & {"post", "e2e"}:
                phases += sorted(selected & {"post", "e2e"})
                results += await post_and_e2e(bench, sizes, selected)
            if "search" in selected:
                bench.memory.phase = "search"
                phases.append("search")
                say(f"search: loading {sizes.search_postings} postings, then the mixes")
                results.append(
                    await search.run(
                        bench,
                        postings=sizes.search_postings,
                        requests=sizes.search_requests,
                        max_s_per_mix=sizes.search_max_s_per_mix,
                    )
                )
                say(_line(results[-1]))
            if "memory" in selected:
                results.append(memory_result(bench, phases))
                say(_line(results[-1]))
            profile_report: dict[str, Any] | None = None
            target = args.profile
            if target == "auto":
                target = slowest(results) or "none"
            target = {"post": "post_application", "e2e": "e2e_latency"}.get(target, target)
            if target != "none":
                say(f"profile: {target} ({SERVICE_OF[target]}) for {sizes.profile_s:.0f} s")
                profile_report = await profile(
                    bench, target, sizes, use_pyinstrument=args.pyinstrument
                )
                if profile_report["errors"] and not args.pyinstrument:
                    say(f"py-spy failed ({profile_report['errors']}); pyinstrument instead")
                    profile_report = await profile(bench, target, sizes, use_pyinstrument=True)
            report = {
                "started_at": started_at.isoformat(),
                "finished_at": datetime.now(UTC).isoformat(),
                "quick": bool(args.quick),
                "command": " ".join(["bench/run.sh", *sys.argv[1:]]),
                "machine": {
                    **info,
                    "load_average_at_end": [round(v, 2) for v in os.getloadavg()],
                    "shared": shared_note(info["load_average_at_start"][0], info["nproc"]),
                },
                "sizes": sizes.as_json(),
                "size_notes": notes,
                "results": [result.as_json() for result in results],
                "cpu_s_by_phase": {
                    label: {phase: round(value, 1) for phase, value in peak.cpu_s_by_phase.items()}
                    for label, peak in bench.memory.peaks.items()
                },
                "profile": profile_report,
            }
        finally:
            bench.stop_all()
            bench.memory.stop()
    json_path, png_path = result_paths(quick=bool(args.quick))
    write_json(json_path, report)
    write_chart(png_path, report)
    say(f"wrote {json_path} and {png_path}")
    for result in results:
        print(_line(result))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes (a few minutes)")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, help="run only these")
    parser.add_argument("--profile", choices=PROFILE_TARGETS, default="auto")
    parser.add_argument(
        "--pyinstrument", action="store_true", help="profile with pyinstrument, not py-spy"
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    # The floor measurement runs the services' store and relay code in this process: only
    # their warnings are of interest here.
    configure_logging("bench", level="WARNING", fmt=LogFormat.CONSOLE)
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    raise SystemExit(main())

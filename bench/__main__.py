"""`python -m bench [--quick] [--only NAME ...] [--SIZE VALUE ...]` (bench/run.sh sets up first)

Starts its own local stack, runs each benchmark beside its baseline in the same run, and writes
`bench/results/<date>.json` and `<date>.png`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import threading
import time
from dataclasses import asdict, fields, replace
from datetime import UTC, datetime
from typing import Any

from bench import drain, e2e, kafka, post, search
from bench.load import Result
from bench.report import write
from bench.stack import FERRETDB, QUICK, STACK_DIR, Bench, Sizes, bench_stack, machine
from hirestream.shared.logging import configure_logging
from hirestream.shared.settings import LogFormat

# In this order: the notifications service's peak memory comes after the drain.
SCENARIOS = {"drain": drain.run, "kafka": kafka.run, "post": post.run, "e2e": e2e.run,
             "search": search.run}  # fmt: skip
SERVICES = ("postings", "applications", "notifications")
SERVERS = {"database server": "mongo", "kafka broker": "kafka", "mail catcher": "smtp"}
MEMORY_GOAL_MIB = 150.0
MEMORY_SAMPLED_EVERY_S = 0.5


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def memory_result(bench: Bench) -> Result:
    peaks = {label: round(peak, 1) for label, peak in bench.peaks_mib.items()}
    services = {label: peak for label, peak in peaks.items() if label in SERVICES}
    worst = max(services, key=services.__getitem__) if services else None
    return Result(
        name="memory",
        what="peak RSS of each service during the benchmarks above (the largest as figure)",
        unit="MiB",
        figure=services[worst] if worst else None,
        baseline=peaks.get(post.BASELINE_LABEL),
        baseline_what="peak RSS of the bare insert app under the POST load",
        goal=MEMORY_GOAL_MIB,
        direction="at_most",
        sizes={"sampled_every_s": MEMORY_SAMPLED_EVERY_S},
        details={"peak_rss_mib": services, "others_peak_rss_mib": peaks},
    )


async def run(args: argparse.Namespace, given: dict[str, Any]) -> None:
    selected = args.only or [*SCENARIOS, "memory"]
    started_at = datetime.now(UTC).isoformat()
    results: list[Result] = []
    say(f"starting the bench stack in {STACK_DIR}")
    with bench_stack() as servers:
        info = await machine(servers)
        ferretdb = info["database"]["kind"] == "FerretDB"
        sizes = replace(QUICK if args.quick else FERRETDB if ferretdb else Sizes(), **given)
        say(f"database {info['database']}, Kafka {info['kafka']}; {sizes}")
        bench = Bench(servers, sizes)
        bench.watched = {label: servers.pid(server) for label, server in SERVERS.items()}
        stop = threading.Event()
        threading.Thread(target=bench.sample_memory, args=(stop, MEMORY_SAMPLED_EVERY_S)).start()
        try:
            for name, scenario in SCENARIOS.items():
                if name in selected:
                    say(f"{name}: the baseline, then ours")
                    results.append(await scenario(bench))
                    say(results[-1].line())
            if "memory" in selected:
                results.append(memory_result(bench))
        finally:
            for process in bench.processes:
                process.stop()
            stop.set()
    report = {
        "started_at": started_at,
        "finished_at": datetime.now(UTC).isoformat(),
        "quick": args.quick,
        "command": " ".join(["bench/run.sh", *sys.argv[1:]]),
        "machine": {**info, "load_average_at_end": [round(v, 2) for v in os.getloadavg()]},
        "sizes": asdict(sizes),
        "sizes_given": given,
        "results": [asdict(result) for result in results],
    }
    json_path, png_path = write(report, quick=args.quick)
    say(f"wrote {json_path} and {png_path}")
    print("\n".join(result.line() for result in results))


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes (about 5 minutes)")
    parser.add_argument("--only", nargs="+", choices=[*SCENARIOS, "memory"])
    for size in fields(Sizes):
        kind = int if size.type in ("int", int) else float
        parser.add_argument(f"--{size.name.replace('_', '-')}", type=kind, help=f"({size.default})")
    args = parser.parse_args()
    given = {f.name: getattr(args, f.name) for f in fields(Sizes)}
    given = {name: value for name, value in given.items() if value is not None}
    # The ceilings run the services' store and relay code in this process: warnings only.
    configure_logging("bench", level="WARNING", fmt=LogFormat.CONSOLE)
    asyncio.run(run(args, given))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

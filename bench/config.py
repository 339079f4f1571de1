"""Sizes and durations of one run: the full defaults, `--quick`, and per-option overrides.

The brief's sizes are 100k backlog events and 100k postings. On FerretDB v1 (SQLite) a query
that is not a lone `_id` equality reads and decodes the whole collection (see README.md,
"FerretDB"), so at 100k documents one search or one outbox claim takes minutes and the default
run would not end in 20 minutes: there the defaults are smaller, and the result file records
the sizes used and why. Any size given on the command line is used as given.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

BENCHMARKS = ("drain", "post", "e2e", "search", "kafka", "memory")


@dataclass(frozen=True)
class Sizes:
    # POST /postings/{id}/applications throughput, closed loop
    post_concurrency: int = 16
    post_warmup_s: float = 5.0
    post_duration_s: float = 30.0
    post_postings: int = 20
    # HTTP 201 -> candidate notification, open loop at a steady rate
    e2e_rate_per_s: float = 5.0
    e2e_duration_s: float = 120.0  # 600 samples a side: a p99 of 225 moved with single outliers
    e2e_settle_s: float = 60.0
    # notifications draining a backlog of application.submitted
    drain_events: int = 100_000
    drain_max_s: float = 300.0
    # GET /postings on a loaded postings collection
    search_postings: int = 100_000
    search_requests: int = 40
    search_max_s_per_mix: float = 60.0
    # Kafka producer ceiling
    kafka_records: int = 100_000
    kafka_record_size: int = 1024
    # the guarantees' database work alone, per request and per event (bench/floor.py)
    floor_units: int = 2_000
    # profiling the slowest path
    profile_s: float = 30.0

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


QUICK = Sizes(
    post_concurrency=8,
    post_warmup_s=2.0,
    post_duration_s=8.0,
    post_postings=5,
    e2e_rate_per_s=1.0,
    e2e_duration_s=10.0,
    e2e_settle_s=20.0,
    drain_events=10_000,  # 2,000 were all read while the service started: nothing to time
    drain_max_s=30.0,
    search_postings=300,
    search_requests=3,
    search_max_s_per_mix=5.0,
    kafka_records=10_000,
    floor_units=200,
    profile_s=10.0,
)

# Full-run defaults on FerretDB v1, sized so the default run ends well inside 20 minutes here.
FERRETDB = replace(
    Sizes(),
    e2e_settle_s=45.0,
    drain_max_s=600.0,  # 100k events took the service 202 s here (2026-11-29-18)
    search_postings=2_000,
    search_requests=15,
    search_max_s_per_mix=30.0,
)
FERRETDB_REASON = (
    "FerretDB v1 (SQLite) answers most filters by reading and decoding the whole collection "
    "(the local stack narrows `_id` lookups and date bounds in SQL), and never sorts on an "
    "index: a search takes seconds at a "
    "few thousand postings, so on FerretDB the defaults are 2,000 postings (not 100k), the "
    "100,000-event backlog measured for at most 600 s (not 300 s); the full sizes run on "
    "mongod, or on FerretDB when given on the command line"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for item in fields(Sizes):
        flag = "--" + item.name.replace("_", "-")
        kind = float if item.type in ("float", float) else int
        parser.add_argument(flag, type=kind, default=None, help=f"(full: {item.default})")


def chosen(args: argparse.Namespace, *, database_kind: str) -> tuple[Sizes, list[str]]:
    """The sizes to use and the notes that explain them."""
    notes: list[str] = []
    if args.quick:
        base = QUICK
        notes.append("--quick: small sizes, to check that everything works end to end")
    elif database_kind == "FerretDB":
        base = FERRETDB
        notes.append(FERRETDB_REASON)
    else:
        base = Sizes()
    given = {
        item.name: getattr(args, item.name)
        for item in fields(Sizes)
        if getattr(args, item.name, None) is not None
    }
    if given:
        notes.append(f"set on the command line: {given}")
    return replace(base, **given), notes

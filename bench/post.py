"""`POST /postings/{id}/applications` throughput and latency at a fixed concurrency, against a
bare FastAPI endpoint doing one `insert_one` (bench/baseline_app.py), same load tool, same
requests, same concurrency, same database server.

Each candidate applies once to each of a few postings (the duplicate guard would answer 409 to
a second try), with an Idempotency-Key as a careful client sends: a token comes with as many
requests in a row as there are postings.
"""

from __future__ import annotations

from typing import Any

from bench.data import application_form
from bench.environment import Bench
from bench.load import LoadReport, Request, closed_loop
from bench.processes import BenchProcess
from bench.stats import Result
from hirestream.shared.identity import Role
from tests.support.servers import free_port

PREMINTED_REQUESTS = 20_000
BASELINE_LABEL = "baseline (bare insert app)"


def _requests(bench: Bench, posting_ids: list[str], tag: str) -> Any:
    def make(index: int) -> Request:
        candidate = f"cand-{bench.run_id}-{tag}-{index // len(posting_ids)}"
        return Request(
            "POST",
            f"/postings/{posting_ids[index % len(posting_ids)]}/applications",
            headers={
                **bench.headers(Role.CANDIDATE, candidate),
                "Idempotency-Key": f"{tag}-{index}",
            },
            json=application_form(index, run=bench.run_id),
        )

    return make


async def measure(
    bench: Bench,
    url: str,
    pid: int,
    posting_ids: list[str],
    *,
    tag: str,
    concurrency: int,
    warmup_s: float,
    duration_s: float,
) -> LoadReport:
    return await closed_loop(
        url,
        _requests(bench, posting_ids, tag),
        concurrency=concurrency,
        warmup_s=warmup_s,
        duration_s=duration_s,
        ok_status=201,
        server_pid=pid,
    )


def baseline_process(bench: Bench) -> BenchProcess:
    port = free_port()
    return BenchProcess(
        name="baseline",
        port=port,
        env={},
        log_path=bench.logs / "baseline.log",
        module="bench.baseline_app",
        args=[
            "--port",
            str(port),
            "--mongodb-url",
            bench.servers.mongodb_url,
            "--database",
            bench.database("baseline_insert"),
        ],
    )


async def run(
    bench: Bench,
    applications: BenchProcess,
    posting_ids: list[str],
    *,
    concurrency: int,
    warmup_s: float,
    duration_s: float,
) -> Result:
    # Pre-mint the tokens the run may need so that signing is not on the client's clock.
    for number in range(PREMINTED_REQUESTS // len(posting_ids)):
        for tag in ("svc", "base"):
            bench.token(Role.CANDIDATE, f"cand-{bench.run_id}-{tag}-{number}")
    baseline = baseline_process(bench)
    bench.memory.phase = "post: baseline"
    bench.start(baseline, label=BASELINE_LABEL)
    try:
        base = await measure(
            bench,
            baseline.url,
            baseline.pid,
            posting_ids,
            tag="base",
            concurrency=concurrency,
            warmup_s=warmup_s,
            duration_s=duration_s,
        )
    finally:
        bench.stop(baseline, label=BASELINE_LABEL)
    bench.memory.phase = "post: service"
    service = await measure(
        bench,
        applications.url,
        applications.pid,
        posting_ids,
        tag="svc",
        concurrency=concurrency,
        warmup_s=warmup_s,
        duration_s=duration_s,
    )
    notes = []
    if service.ok < service.completed:
        notes.append(f"service answers other than 201: {dict(service.statuses)}")
    return Result(
        name="post_application",
        what="POST /postings/{id}/applications throughput at fixed concurrency",
        unit="requests/s",
        figure=round(service.throughput, 1),
        baseline=round(base.throughput, 1),
        baseline_what="bare FastAPI endpoint on uvicorn doing one insert_one (same server)",
        goal=0.5,
        direction="min",
        sizes={
            "concurrency": concurrency,
            "warmup_s": warmup_s,
            "duration_s": duration_s,
            "postings": len(posting_ids),
        },
        details={"service": service.summary(), "baseline": base.summary()},
        notes=notes,
    ).judge()

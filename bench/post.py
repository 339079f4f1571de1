"""`POST /postings/{id}/applications` throughput at a fixed concurrency, against a bare FastAPI
endpoint doing one `insert_one` (bench/baseline_app.py), same requests; then the guarantees'
writes alone (bench/floor.py). The client is a small aiohttp loop: every request differs (or
the duplicate guard answers 409), which wrk cannot do without Lua, and locust would cost more
CPU than the services on two cores. The client shares those cores, so its CPU is recorded."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from typing import Any

import aiohttp

from bench import floor
from bench.data import application_form
from bench.kafka import skip_earlier_backlogs
from bench.load import Latencies, Result, machine_cpu_s, per_unit_ms, process_cpu_s, session
from bench.stack import LOGS, Bench, BenchProcess, create_postings
from hirestream.shared.identity import Role
from tests.support.servers import free_port

BASELINE_LABEL = "baseline (bare insert app)"
PREMINTED_REQUESTS = 20_000  # tokens signed before the clock starts


async def closed_loop(
    bench: Bench, server: BenchProcess, ids: list[str], tag: str
) -> dict[str, Any]:
    """Workers each send their next request once the last one is answered; what completes
    during the warm-up is not counted. Each token comes with one request per posting, with an
    Idempotency-Key as a careful client sends it."""
    sizes = bench.sizes
    for number in range(PREMINTED_REQUESTS // len(ids)):
        bench.headers(Role.CANDIDATE, f"cand-{bench.run_id}-{tag}-{number}")
    counter, statuses, latencies = itertools.count(), Counter[str](), Latencies()
    measure_from = time.perf_counter() + sizes.post_warmup_s
    measure_to = measure_from + sizes.post_duration_s
    cpu: dict[str, float] = {}

    async def worker(http: aiohttp.ClientSession) -> None:
        while time.perf_counter() < measure_to:
            index = next(counter)
            candidate = f"cand-{bench.run_id}-{tag}-{index // len(ids)}"
            path = f"/postings/{ids[index % len(ids)]}/applications"
            headers = {
                **bench.headers(Role.CANDIDATE, candidate),
                "Idempotency-Key": f"{tag}-{index}",
            }
            body = application_form(index, run=bench.run_id, candidate=candidate)
            began = time.perf_counter()
            try:
                async with http.post(path, headers=headers, json=body) as response:
                    await response.read()
                    status = str(response.status)
            except (aiohttp.ClientError, TimeoutError) as error:
                status = type(error).__name__
            done = time.perf_counter()
            if measure_from <= done <= measure_to:
                statuses[status] += 1
                if status == "201":
                    latencies.add(done - began)

    async def cpu_in_window() -> None:
        await asyncio.sleep(max(0.0, measure_from - time.perf_counter()))
        client, served, busy = time.process_time(), process_cpu_s(server.pid), machine_cpu_s()
        await asyncio.sleep(max(0.0, measure_to - time.perf_counter()))
        cpu["client"] = time.process_time() - client
        cpu["server"] = process_cpu_s(server.pid) - served
        cpu["machine"] = machine_cpu_s() - busy

    async with session(server.url, connections=sizes.post_concurrency) as http:
        await asyncio.gather(
            cpu_in_window(), *(worker(http) for _ in range(sizes.post_concurrency))
        )
    ok = statuses["201"]
    return {
        "requests_per_s": round(ok / sizes.post_duration_s, 1),
        "statuses": dict(statuses),
        "latency": latencies.summary(),
        "client_cpu_s": round(cpu["client"], 2),
        "server_cpu_ms_per_request": per_unit_ms(cpu["server"], ok),
        "machine_cpu_ms_per_request": per_unit_ms(cpu["machine"], ok),
    }


async def run(bench: Bench) -> Result:
    await skip_earlier_backlogs(bench.servers.kafka_bootstrap)
    postings = bench.service("postings", "postings_post")
    applications = bench.service("applications", "applications_post")
    database = bench.database("applications_post")
    ids = await create_postings(
        bench, postings.url, database, bench.sizes.post_postings, org="acme-post"
    )
    port = free_port()
    bare_app = BenchProcess(
        "baseline", port, {}, LOGS / "baseline.log", label=BASELINE_LABEL,
        module="bench.baseline_app",
        args=["--port", str(port), "--mongodb-url", bench.servers.mongodb_url,
              "--database", bench.database("baseline_insert")],
    )  # fmt: skip
    bench.start(bare_app)
    try:
        baseline = await closed_loop(bench, bare_app, ids, "base")
    finally:
        bench.stop(bare_app)
    service = await closed_loop(bench, applications, ids, "svc")
    bench.stop(applications, postings)
    writes = await floor.post_writes(bench, requests=bench.sizes.floor_units)
    others = {status: n for status, n in service["statuses"].items() if status != "201"}
    return Result(
        name="post_application",
        what="POST /postings/{id}/applications throughput at a fixed concurrency",
        unit="requests/s",
        figure=service["requests_per_s"],
        baseline=baseline["requests_per_s"],
        baseline_what="bare FastAPI endpoint on uvicorn doing one insert_one (same server)",
        goal=0.5,
        direction="min",
        sizes={"concurrency": bench.sizes.post_concurrency, "postings": len(ids),
               "warmup_s": bench.sizes.post_warmup_s, "duration_s": bench.sizes.post_duration_s},
        details={"service": service, "baseline": baseline,
                 "ceiling": floor.ceiling(baseline["requests_per_s"], writes)},
        notes=[f"answers other than 201: {others}"] if others else [],
    )  # fmt: skip

"""`GET /postings` latency per filter mix on a loaded collection, against the store's own query
run with PyMongo: `_query` of the same `PostingSearch`, its projection, newest first. Postings
are written in the store's document shape, with its indexes, before the service starts. HTTP
and direct requests alternate one at a time, so both see the same background load; the first of
each parameter set checks that both return the same page."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from bench.data import SEARCH_MIXES, SearchMix, posting_document
from bench.load import Latencies, Result, ratio, session
from bench.stack import Bench, Document
from hirestream.postings.domain import PostingSearch
from hirestream.postings.store import COLLECTION, INDEXES, NEWEST, NOT_RETURNED, _query
from hirestream.shared.identity import Role
from hirestream.shared.storage.mongo import ensure_indexes

LIMIT = 20
BATCH = 1000


async def load_postings(bench: Bench, database: str, count: int) -> None:
    client = bench.mongo()
    try:
        await ensure_indexes(client[database], [INDEXES])
        rng, now = random.Random(2024), datetime.now(UTC)
        for start in range(0, count, BATCH):
            documents = [posting_document(rng, now=now) for _ in range(min(BATCH, count - start))]
            await client[database][COLLECTION].insert_many(documents, ordered=False)
    finally:
        await client.close()


def _search(params: dict[str, str]) -> PostingSearch:
    # The query strings as FastAPI hands them over; the model coerces "15000000" to an int.
    filters = {name: value for name, value in params.items() if name not in ("q", "skills")}
    return PostingSearch.from_query(q=params.get("q"), skills=params.get("skills"), **filters)


async def measure_mix(
    bench: Bench, url: str, database: str, mix: SearchMix, *, requests: int, max_s: float
) -> tuple[Latencies, Latencies, list[str]]:
    """HTTP latencies, direct latencies, and the parameter sets whose pages differed."""
    client = bench.mongo()
    collection = client[database][COLLECTION]
    headers = bench.headers(Role.CANDIDATE, f"searcher-{bench.run_id}")
    http_latency, direct_latency, mismatched = Latencies(), Latencies(), []
    started = time.perf_counter()
    try:
        async with session(url, connections=1) as http:
            for index in range(requests):
                if index >= 3 and time.perf_counter() - started > max_s:
                    break
                params = mix.params[index % len(mix.params)]
                began = time.perf_counter()
                path = f"/postings?{urlencode({**params, 'limit': LIMIT})}"
                async with http.get(path, headers=headers) as response:
                    body = await response.json()
                    if response.status != 200:
                        raise RuntimeError(f"GET {path}: {response.status} {body}")
                http_latency.add(time.perf_counter() - began)
                began = time.perf_counter()
                found: list[Document] = (
                    await collection.find(_query(_search(params)), projection=NOT_RETURNED)
                    .sort(NEWEST)
                    .limit(LIMIT + 1)
                    .to_list()
                )
                direct_latency.add(time.perf_counter() - began)
                over_http = [item["posting_id"] for item in body["items"]]
                if index < len(mix.params) and over_http != [str(d["_id"]) for d in found[:LIMIT]]:
                    mismatched.append(str(params))
    finally:
        await client.close()
    return http_latency, direct_latency, mismatched


async def run(bench: Bench) -> Result:
    postings, requests = bench.sizes.search_postings, bench.sizes.search_requests
    max_s_per_mix = bench.sizes.search_max_s_per_mix
    database = bench.database("postings_search")
    await load_postings(bench, database, postings)
    process = bench.service("postings", "postings_search")
    mixes: dict[str, dict[str, Any]] = {}
    try:
        for mix in SEARCH_MIXES:
            http, direct, mismatched = await measure_mix(
                bench, process.url, database, mix, requests=requests, max_s=max_s_per_mix
            )
            mixes[mix.name] = {
                "what": mix.what,
                "http": http.summary(),
                "direct": direct.summary(),
                "p99_ratio": ratio(http.ms(99), direct.ms(99)),
                "mismatched": mismatched,
            }
    finally:
        bench.stop(process)
    worst = max(mixes, key=lambda name: mixes[name]["p99_ratio"] or 0.0)
    notes = []
    if any(mix["mismatched"] for mix in mixes.values()):
        notes.append("some HTTP and direct pages differed: see details.mixes.*.mismatched")
    return Result(
        name="search",
        what="GET /postings p99, the worst filter mix (each mix's ratio in details)",
        unit="ms (p99)",
        figure=mixes[worst]["http"]["p99_ms"],
        baseline=mixes[worst]["direct"]["p99_ms"],
        baseline_what="the store's own query (_query, projection, sort, limit) run with PyMongo",
        goal=2.0,
        direction="max",
        sizes={"postings": postings, "requests_per_mix": requests, "max_s_per_mix": max_s_per_mix},
        details={"worst_mix": worst, "mixes": mixes},
        notes=notes,
    )

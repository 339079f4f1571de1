"""`GET /postings` latency on a loaded postings collection, several filter mixes, against the
very same MongoDB query run directly with PyMongo.

The postings are written straight into the postings database in the service's own document
shape (bench/data.py: `Posting.publish` + `store._stored_fields`, with `search_tokens` and
`city_key`), after `ensure_indexes` with the service's `INDEXES`; then the postings service is
started on that database. For each mix, requests alternate one HTTP, one direct, one HTTP...
(so both sides see the same background load), one at a time. The direct query is the store's:
`_query(PostingSearch.from_query(...))`, the same projection, `.sort(NEWEST).limit(limit + 1)`.
The first request of each parameter set checks that both sides return the same postings.
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from bench.data import SEARCH_MIXES, SearchMix, posting_document
from bench.environment import Bench
from bench.load import session
from bench.stats import Latencies, Result
from hirestream.postings.domain import PostingSearch
from hirestream.postings.store import COLLECTION, INDEXES, NEWEST, _query
from hirestream.shared.identity import Role
from hirestream.shared.storage.mongo import ensure_indexes

LIMIT = 20
BATCH = 1000


async def load_postings(bench: Bench, database: str, count: int) -> dict[str, Any]:
    client = bench.mongo()
    try:
        db = client[database]
        await ensure_indexes(db, INDEXES)
        rng = random.Random(2024)
        now = datetime.now(UTC)
        built = inserted = 0.0
        for start in range(0, count, BATCH):
            began = time.perf_counter()
            documents = [posting_document(rng, now=now) for _ in range(min(BATCH, count - start))]
            middle = time.perf_counter()
            await db[COLLECTION].insert_many(documents, ordered=False)
            built += middle - began
            inserted += time.perf_counter() - middle
        stored = await db[COLLECTION].count_documents({})
        open_count = await db[COLLECTION].count_documents({"status": "open"})
    finally:
        await client.close()
    return {
        "postings": stored,
        "open": open_count,
        "build_s": round(built, 1),
        "insert_s": round(inserted, 1),
        "inserts_per_s": round(count / inserted, 1) if inserted else None,
    }


def _search(params: dict[str, str]) -> PostingSearch:
    # The API's query strings, coerced by the model as FastAPI would ("15000000" -> int).
    filters = {name: value for name, value in params.items() if name not in ("q", "skills")}
    return PostingSearch.from_query(q=params.get("q"), skills=params.get("skills"), **filters)


async def measure_mix(
    bench: Bench, postings_url: str, database: str, mix: SearchMix, *, requests: int, max_s: float
) -> dict[str, Any]:
    client = bench.mongo()
    collection = client[database][COLLECTION]
    headers = bench.headers(Role.CANDIDATE, f"searcher-{bench.run_id}")
    http_latency = Latencies()
    direct_latency = Latencies()
    mismatches: list[str] = []
    returned: list[int] = []
    started = time.perf_counter()
    try:
        async with session(postings_url, connections=1) as http:
            for index in range(requests):
                if index >= 3 and time.perf_counter() - started > max_s:
                    break
                params = mix.params[index % len(mix.params)]
                query = _query(_search(params))
                began = time.perf_counter()
                async with http.get(
                    f"/postings?{urlencode({**params, 'limit': LIMIT})}", headers=headers
                ) as response:
                    body = await response.json()
                    if response.status != 200:
                        raise RuntimeError(f"GET /postings {params}: {response.status} {body}")
                http_latency.add(time.perf_counter() - began)
                began = time.perf_counter()
                documents = (
                    await collection.find(query, projection={"outbox": 0, "search_tokens": 0})
                    .sort(NEWEST)
                    .limit(LIMIT + 1)
                    .to_list()
                )
                direct_latency.add(time.perf_counter() - began)
                if index < len(mix.params):
                    over_http = [item["posting_id"] for item in body["items"]]
                    direct = [str(document["_id"]) for document in documents[:LIMIT]]
                    returned.append(len(direct))
                    if over_http != direct:
                        mismatches.append(str(params))
    finally:
        await client.close()
    return {
        "what": mix.what,
        "params": mix.params,
        "http": http_latency.summary(),
        "direct": direct_latency.summary(),
        "results_per_page": returned,
        "mismatched_results": mismatches,
        "_http": http_latency,
        "_direct": direct_latency,
    }


async def run(bench: Bench, *, postings: int, requests: int, max_s_per_mix: float) -> Result:
    database = bench.database("postings_search")
    loaded = await load_postings(bench, database, postings)
    process = bench.service("postings", database=database)
    bench.start(process, label="postings")
    mixes: dict[str, Any] = {}
    try:
        for mix in SEARCH_MIXES:
            mixes[mix.name] = await measure_mix(
                bench, process.url, database, mix, requests=requests, max_s=max_s_per_mix
            )
    finally:
        bench.stop(process, label="postings")
    all_http = Latencies()
    all_direct = Latencies()
    worst_ratio = 0.0
    for name, mix_result in mixes.items():
        http: Latencies = mix_result.pop("_http")
        direct: Latencies = mix_result.pop("_direct")
        all_http.samples += http.samples
        all_direct.samples += direct.samples
        ours, theirs = http.summary()["p99_ms"], direct.summary()["p99_ms"]
        if isinstance(ours, float) and isinstance(theirs, float) and theirs:
            mix_result["p99_ratio"] = round(ours / theirs, 3)
            worst_ratio = max(worst_ratio, ours / theirs)
        else:
            mix_result["p99_ratio"] = None
        mixes[name] = mix_result
    worst = max(mixes, key=lambda name: mixes[name]["p99_ratio"] or 0.0)
    result = Result(
        name="search",
        what="GET /postings p99, worst filter mix (each mix's ratio in details)",
        unit="ms (p99)",
        figure=mixes[worst]["http"]["p99_ms"],
        baseline=mixes[worst]["direct"]["p99_ms"],
        baseline_what="the store's own query (_query + sort + limit) run directly with PyMongo",
        goal=2.0,
        direction="max",
        sizes={
            "postings": postings,
            "requests_per_side_per_mix": requests,
            "max_s_per_mix": max_s_per_mix,
            "limit": LIMIT,
        },
        details={
            "worst_mix": worst,
            "load": loaded,
            "mixes": mixes,
            "all_mixes": {"http": all_http.summary(), "direct": all_direct.summary()},
        },
    ).judge()
    if any(mix_result["mismatched_results"] for mix_result in mixes.values()):
        result.notes.append("some HTTP and direct pages differed: see mixes.*.mismatched_results")
    return result

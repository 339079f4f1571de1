"""The run's own world: its sizes, a local stack in `.stack/bench/stack` on free ports (never
the developer's running stack), the services started on it as in production, tokens, a sampler
of the processes' memory, and what the result must say about the machine."""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import random
import re
import secrets
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

import aiohttp
import psutil
from pymongo import AsyncMongoClient

from bench.data import candidate_email, posting_draft
from hirestream.shared.devtoken import mint_token
from hirestream.shared.identity import Role
from tests.support.processes import ServiceProcess
from tests.support.servers import REPO, Servers, free_port, from_local_stack

STACK_DIR = REPO / ".stack" / "bench" / "stack"
LOGS = REPO / ".stack" / "bench" / "logs"
Document = dict[str, Any]


@dataclass(frozen=True)
class Sizes:
    """The full run's sizes (each can be set with `--name-with-dashes VALUE`)."""

    post_concurrency: int = 16
    post_warmup_s: float = 5.0
    post_duration_s: float = 30.0
    post_postings: int = 20
    e2e_rate_per_s: float = 5.0
    e2e_duration_s: float = 120.0
    e2e_settle_s: float = 60.0
    drain_events: int = 100_000
    drain_max_s: float = 300.0
    search_postings: int = 100_000
    search_requests: int = 40
    search_max_s_per_mix: float = 60.0
    kafka_records: int = 100_000
    kafka_record_size: int = 1024
    floor_units: int = 2_000  # requests, then events, of the guarantees' writes alone


# FerretDB reads the whole collection for any filter but an `_id` lookup: a search takes
# seconds at a few thousand postings, and the 100,000-event drain about three minutes.
FERRETDB = replace(
    Sizes(),
    e2e_settle_s=45.0,
    drain_max_s=600.0,
    search_postings=2_000,
    search_requests=15,
    search_max_s_per_mix=30.0,
)
QUICK = Sizes(
    post_concurrency=8, post_warmup_s=2.0, post_duration_s=8.0, post_postings=5,
    e2e_rate_per_s=1.0, e2e_duration_s=10.0, e2e_settle_s=20.0,
    drain_events=10_000, drain_max_s=30.0,  # fewer would all be read while the service starts
    search_postings=300, search_requests=3, search_max_s_per_mix=5.0,
    kafka_records=10_000, floor_units=200,
)  # fmt: skip


@contextmanager
def bench_stack() -> Iterator[Servers]:
    """A fresh local stack for this run; its data is deleted before and after."""
    shutil.rmtree(STACK_DIR, ignore_errors=True)
    STACK_DIR.mkdir(parents=True)
    LOGS.mkdir(parents=True, exist_ok=True)
    try:
        with from_local_stack(STACK_DIR) as servers:
            yield servers
    finally:
        for data in ("kafka", "mongo", "mail"):
            shutil.rmtree(STACK_DIR / data, ignore_errors=True)


@dataclass
class BenchProcess(ServiceProcess):
    """A service (`python -m hirestream.<name>`), or with `module` the baseline app."""

    module: str = ""
    args: list[str] = field(default_factory=list)
    label: str = ""  # in the memory figures

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 - our interpreter, our module
                [sys.executable, "-m", self.module or f"hirestream.{self.name}", *self.args],
                env={**os.environ, **self.env, "PORT": str(self.port)},
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    @property
    def pid(self) -> int:
        assert self.process is not None, "not started"
        return self.process.pid


@dataclass
class Bench:
    """What every benchmark of one run shares."""

    servers: Servers
    sizes: Sizes
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    jwt_secret: str = field(default_factory=lambda: secrets.token_urlsafe(48))
    processes: list[BenchProcess] = field(default_factory=list)
    watched: dict[str, int] = field(default_factory=dict)  # label -> pid, replaced whole
    peaks_mib: dict[str, float] = field(default_factory=dict)
    _tokens: dict[tuple[Role, str, str | None], str] = field(default_factory=dict)

    def sample_memory(self, stop: threading.Event, interval_s: float) -> None:
        """Peak RSS of the watched processes, in a thread of its own."""
        while not stop.wait(interval_s):
            for label, pid in self.watched.items():
                with contextlib.suppress(psutil.Error):
                    rss = psutil.Process(pid).memory_info().rss / 2**20
                    self.peaks_mib[label] = max(self.peaks_mib.get(label, 0.0), rss)

    def database(self, purpose: str) -> str:
        return f"bench_{purpose}_{self.run_id}"

    def service(self, name: str, purpose: str) -> BenchProcess:
        """The service, ready, on a database of its own: production settings except where the
        benchmark's load would measure something else."""
        database = self.database(purpose)
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": self.servers.kafka_bootstrap,
            "MONGODB_URL": self.servers.mongodb_url,
            "MONGODB_DATABASE": database,
            "SMTP_HOST": self.servers.smtp_host,
            "SMTP_PORT": str(self.servers.smtp_port),
            "JWT_SECRET": self.jwt_secret,
            "ENVIRONMENT": "development",
            "LOG_LEVEL": "INFO",
            "LOG_FORMAT": "json",
            # One address and few tokens: the default 120/minute would measure the limiter.
            "RATE_LIMIT_WRITES": "100000000/minute",
            "SHUTDOWN_TIMEOUT_S": "10",
            "WEBHOOK_ALLOW_PRIVATE": "true",
            **self.servers.kafka_env(name),
        }
        log_path = LOGS / f"{name}-{database}.log"
        return self.start(BenchProcess(name, free_port(), env, log_path, label=name))

    def start(self, process: BenchProcess) -> BenchProcess:
        process.start()
        self.processes.append(process)
        process.wait_ready()
        self.watched = {**self.watched, process.label: process.pid}
        return process

    def stop(self, *processes: BenchProcess) -> None:
        for process in processes:
            self.watched = {k: v for k, v in self.watched.items() if k != process.label}
            process.stop()

    def headers(self, role: Role, sub: str, org: str | None = None) -> dict[str, str]:
        key = (role, sub, org)
        if key not in self._tokens:
            ttl = timedelta(hours=6)
            # A candidate applies with the address the token verified, as the services require.
            email = candidate_email(sub) if role == Role.CANDIDATE else None
            self._tokens[key] = mint_token(
                self.jwt_secret, role=role, sub=sub, org=org, email=email, ttl=ttl
            )
        return {"Authorization": f"Bearer {self._tokens[key]}"}

    def mongo(self) -> AsyncMongoClient[Document]:
        return AsyncMongoClient(self.servers.mongodb_url, tz_aware=True)


async def create_postings(
    bench: Bench, postings_url: str, applications_db: str, count: int, *, org: str
) -> list[str]:
    """Publish `count` postings over HTTP, as an employer would, and wait until the
    applications service's read model has them all."""
    rng = random.Random(7)
    headers = bench.headers(Role.EMPLOYER, f"recruiter-{org}", org)
    ids: list[str] = []
    async with aiohttp.ClientSession(base_url=postings_url, headers=headers) as http:
        for _ in range(count):
            async with http.post("/postings", json=posting_draft(rng).model_dump(mode="json")) as r:
                if r.status != 201:
                    raise RuntimeError(f"POST /postings: {r.status} {await r.text()}")
                ids.append((await r.json())["posting_id"])
    client = bench.mongo()
    try:
        deadline = time.monotonic() + 120
        while await client[applications_db]["postings_view"].count_documents({}) < count:
            if time.monotonic() > deadline:
                raise RuntimeError("the applications read model did not get the postings")
            await asyncio.sleep(0.5)
    finally:
        await client.close()
    return ids


async def machine(servers: Servers) -> dict[str, Any]:
    """What a reader needs to weigh the figures: the machine, its load, the servers' kinds."""
    client: AsyncMongoClient[Document] = AsyncMongoClient(servers.mongodb_url)
    try:
        info = await client.admin.command("buildInfo")
    finally:
        await client.close()
    database = {"kind": "mongod", "version": info.get("version")}
    if "ferretdbVersion" in info:
        # The local build carries no version of its own: the module it builds on has one.
        go_mod = (REPO / "deploy" / "local" / "ferretdb" / "go.mod").read_text()
        found = re.search(r"FerretDB/FerretDB (v[\d.]+)", go_mod)
        database = {"kind": "FerretDB", "version": found[1] if found else info["ferretdbVersion"]}
    jars = sorted((REPO / ".stack" / "cache" / "kafka" / "libs").glob("kafka-clients-*.jar"))
    return {
        "nproc": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "load_average_at_start": [round(value, 2) for value in os.getloadavg()],
        "python": platform.python_version(),
        "database": database,
        "kafka": jars[0].stem.removeprefix("kafka-clients-") if jars else None,
    }

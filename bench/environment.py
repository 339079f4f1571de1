"""The benchmark's own world: a local stack in `.stack/bench/stack` on free ports (never the
developer's running stack), the services started as processes on it, tokens, and what the
results must say about the machine."""

from __future__ import annotations

import asyncio
import os
import platform
import random
import re
import secrets
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import psutil
from pymongo import AsyncMongoClient

from bench.data import posting_draft
from bench.processes import BenchProcess, MemorySampler, log_dir
from bench.profiling import Profiler
from hirestream.shared.devtoken import mint_token
from hirestream.shared.identity import Role
from tests.support.servers import REPO, Servers, free_port, from_local_stack

BENCH_STATE = REPO / ".stack" / "bench"
STACK_DIR = BENCH_STATE / "stack"
FERRETDB_GO_MOD = REPO / "deploy" / "local" / "ferretdb" / "go.mod"
KAFKA_LIBS = REPO / ".stack" / "cache" / "kafka" / "libs"

Document = dict[str, Any]
TOKEN_TTL = timedelta(hours=6)


@contextmanager
def bench_stack() -> Iterator[Servers]:
    """A fresh local stack for this run: its data is deleted before and after."""
    if STACK_DIR.exists():
        shutil.rmtree(STACK_DIR)
    STACK_DIR.mkdir(parents=True)
    try:
        with from_local_stack(STACK_DIR) as servers:
            yield servers
    finally:
        shutil.rmtree(STACK_DIR / "kafka", ignore_errors=True)
        shutil.rmtree(STACK_DIR / "mongo", ignore_errors=True)
        shutil.rmtree(STACK_DIR / "mail", ignore_errors=True)


@dataclass
class Bench:
    """What every benchmark shares in one run."""

    servers: Servers
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    jwt_secret: str = field(default_factory=lambda: secrets.token_urlsafe(48))
    memory: MemorySampler = field(default_factory=MemorySampler)
    processes: list[BenchProcess] = field(default_factory=list)
    profiler: Profiler | None = None
    _tokens: dict[tuple[str, str, str | None], str] = field(default_factory=dict)

    @property
    def logs(self) -> Path:
        return log_dir(BENCH_STATE)

    def base_env(self) -> dict[str, str]:
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.servers.kafka_bootstrap,
            "MONGODB_URL": self.servers.mongodb_url,
            "SMTP_HOST": self.servers.smtp_host,
            "SMTP_PORT": str(self.servers.smtp_port),
            "JWT_SECRET": self.jwt_secret,
            "ENVIRONMENT": "development",
            # As in production (INFO, JSON lines): logging is part of what a request costs.
            "LOG_LEVEL": "INFO",
            "LOG_FORMAT": "json",
            # The load comes from few clients on one address: the per-client write limit
            # (120/minute by default) would measure the limiter, not the service.
            "RATE_LIMIT_WRITES": "100000000/minute",
            "SHUTDOWN_TIMEOUT_S": "10",
            "WEBHOOK_ALLOW_PRIVATE": "true",
        }

    def database(self, purpose: str) -> str:
        return f"bench_{purpose}_{self.run_id}"

    def service(
        self,
        name: str,
        *,
        database: str,
        extra_env: dict[str, str] | None = None,
    ) -> BenchProcess:
        python_args: list[str] = []
        module, args = "", []
        env = {**self.base_env(), "MONGODB_DATABASE": database, **(extra_env or {})}
        if self.profiler is not None and self.profiler.target == name:
            # Every MongoDB command timed (bench/dbtrace.py), and py-spy attached on start.
            module, args = "bench.dbtrace", [f"hirestream.{name}"]
            env["BENCH_DBTRACE_OUT"] = str(self.profiler.dbtrace_path(name))
            if self.profiler.wants_pyinstrument(name):
                python_args = self.profiler.pyinstrument_args(name)
        return BenchProcess(
            name=name,
            port=free_port(),
            env=env,
            log_path=self.logs / f"{name}-{database}.log",
            module=module,
            args=args,
            python_args=python_args,
        )

    def start(self, process: BenchProcess, *, label: str | None = None) -> BenchProcess:
        process.start()
        self.processes.append(process)
        process.wait_ready()
        self.memory.watch(label or process.name, process.pid)
        if self.profiler is not None:
            self.profiler.attach(process.name, process.pid)
        return process

    def stop(self, process: BenchProcess, *, label: str | None = None) -> None:
        self.memory.unwatch(label or process.name)
        if self.profiler is not None:
            self.profiler.detach(process.name)
        process.stop()

    def stop_all(self) -> None:
        for process in self.processes:
            process.stop()

    def token(self, role: Role, sub: str, org: str | None = None) -> str:
        key = (role.value, sub, org)
        if key not in self._tokens:
            self._tokens[key] = mint_token(
                self.jwt_secret, role=role, sub=sub, org=org, ttl=TOKEN_TTL
            )
        return self._tokens[key]

    def headers(self, role: Role, sub: str, org: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(role, sub, org)}"}

    def mongo(self) -> AsyncMongoClient[Document]:
        return AsyncMongoClient(self.servers.mongodb_url, tz_aware=True)


async def create_postings(
    bench: Bench, postings_url: str, applications_db: str | None, count: int, *, org: str
) -> list[str]:
    """Publish `count` postings over HTTP (as an employer would) and, when `applications_db`
    is given, wait until the applications service's read model knows them all."""
    rng = random.Random(7)
    headers = bench.headers(Role.EMPLOYER, f"recruiter-{org}", org)
    ids: list[str] = []
    async with aiohttp.ClientSession(base_url=postings_url, headers=headers) as session:
        for _ in range(count):
            body = posting_draft(rng).model_dump(mode="json")
            async with session.post("/postings", json=body) as response:
                if response.status != 201:
                    raise RuntimeError(f"POST /postings: {response.status} {await response.text()}")
                ids.append((await response.json())["posting_id"])
    if applications_db is not None:
        client = bench.mongo()
        try:
            view = client[applications_db]["postings_view"]
            deadline = time.monotonic() + 120
            while await view.count_documents({}) < count:
                if time.monotonic() > deadline:
                    raise RuntimeError("the applications read model did not get the postings")
                await asyncio.sleep(0.5)
        finally:
            await client.close()
    return ids


async def machine(servers: Servers) -> dict[str, Any]:
    """What a reader needs to weigh the figures: the machine and the servers' kinds."""
    client: AsyncMongoClient[Document] = AsyncMongoClient(servers.mongodb_url)
    try:
        info = await client.admin.command("buildInfo")
    finally:
        await client.close()
    if "ferretdbVersion" in info:
        match = re.search(r"FerretDB/FerretDB (v[\d.]+)", FERRETDB_GO_MOD.read_text())
        database = {
            "kind": "FerretDB",
            "version": match.group(1) if match else info.get("ferretdbVersion"),
            "backend": (
                "SQLite (local stack wrapper: write commands serialised; lookups by _id use "
                "the _id index, deploy/local/ferretdb/patches)"
            ),
            "reports_mongodb": info.get("version"),
        }
    else:
        database = {"kind": "mongod", "version": info.get("version")}
    kafka_version = None
    if servers.stack_dir is not None:
        log = servers.stack_dir / "logs" / "kafka.log"
        if log.exists():
            found = re.search(r"Kafka version: ([\w.\-]+)", log.read_text(errors="replace"))
            kafka_version = found.group(1) if found else None
    if kafka_version is None:
        jars = sorted(KAFKA_LIBS.glob("kafka-clients-*.jar"))
        kafka_version = jars[0].stem.removeprefix("kafka-clients-") if jars else None
    return {
        "nproc": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 1024**3, 1),
        "load_average_at_start": [round(value, 2) for value in os.getloadavg()],
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "database": database,
        "kafka": {"version": kafka_version, "nodes": 1},
    }

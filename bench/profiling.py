"""Profiling a service while it runs a benchmark's path, and what the database does with the
queries that path sends.

py-spy attaches to the running service by pid (it needs ptrace; as root on this machine it
may) and samples its stacks 100 times a second without pausing it (`--nonblocking`); idle
time (the event loop waiting in `select`) is left out, so the profile is where the CPU goes.
When py-spy cannot attach, the service is started under pyinstrument instead
(`python -m pyinstrument -m hirestream.<name>`), which writes its report when the service
exits. The raw py-spy output (collapsed stacks) is summarised here into the functions that
take the most samples, on their own (self) and with what they call (inclusive).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pymongo import ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection

from hirestream.shared.events.types import utc_now
from hirestream.shared.messaging.outbox import CLAIM, DUE_AT

PY_SPY = Path(sys.executable).parent / "py-spy"
PROJECT_MARKERS = ("hirestream", "pymongo", "faststream", "aiokafka", "fastapi", "starlette")


@dataclass
class Profiler:
    """Attaches py-spy to the process named `target` when the benchmark starts it, or (with
    `use_pyinstrument`) has that process started under pyinstrument."""

    target: str
    out_dir: Path
    tag: str
    use_pyinstrument: bool = False
    attached: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    outputs: list[Path] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def dbtrace_path(self, name: str) -> Path:
        out = self.out_dir / f"{self.tag}-{name}.dbtrace.json"
        self.outputs.append(out)
        return out

    def wants_pyinstrument(self, name: str) -> bool:
        return self.use_pyinstrument and name == self.target

    def pyinstrument_args(self, name: str) -> list[str]:
        out = self.out_dir / f"{self.tag}-{name}.pyinstrument.txt"
        self.outputs.append(out)
        return ["-m", "pyinstrument", "--renderer", "text", "--outfile", str(out)]

    def attach(self, name: str, pid: int) -> None:
        if self.use_pyinstrument or name != self.target or name in self.attached:
            return
        out = self.out_dir / f"{self.tag}-{name}.pyspy.txt"
        log = (self.out_dir / f"{self.tag}-{name}.pyspy.log").open("wb")
        spy = subprocess.Popen(  # noqa: S603 - the venv's py-spy, fixed arguments
            [str(PY_SPY), "record", "--pid", str(pid), "--rate", "100", "--nonblocking",
             "--format", "raw", "--output", str(out)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        time.sleep(1.0)
        if spy.poll() is not None:
            self.errors.append(f"py-spy could not attach to {name} (exit {spy.returncode})")
            return
        self.attached[name] = spy
        self.outputs.append(out)

    def detach(self, name: str) -> None:
        spy = self.attached.pop(name, None)
        if spy is None:
            return
        spy.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
        try:
            spy.wait(timeout=60)
        except subprocess.TimeoutExpired:
            spy.kill()


def summarise_collapsed(path: Path, *, top: int = 25) -> dict[str, Any]:
    """Self and inclusive sample counts per function from py-spy's raw (collapsed) output."""
    self_counts: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [_short(frame) for frame in stack.split(";")]
        if frames:
            self_counts[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count

    def share(counter: Counter[str], keep: int, only_project: bool) -> list[dict[str, Any]]:
        rows = []
        for frame, count in counter.most_common():
            if only_project and not any(marker in frame for marker in PROJECT_MARKERS):
                continue
            rows.append({"frame": frame, "samples": count, "share": round(count / total, 3)})
            if len(rows) >= keep:
                break
        return rows

    return {
        "samples": total,
        "top_self": share(self_counts, top, False),
        "top_inclusive_project": share(inclusive, top, True),
    }


def _short(frame: str) -> str:
    """`func (/long/path/site-packages/pkg/mod.py:12)` -> `func (pkg/mod.py:12)`."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    for marker in ("site-packages/", "/src/", "/lib/python3.11/"):
        if marker in where:
            where = where.split(marker, 1)[1]
            break
    return f"{name} ({where})" if where else name


async def database_probe(collection: AsyncCollection[dict[str, Any]]) -> dict[str, Any]:
    """How long the outbox relay's queries take on this collection (the inline relay's by
    `_id`, the sweep's conditional ones), and whether the server pushed each filter down
    (FerretDB's explain says so)."""
    sample = await collection.find_one({}, projection={"_id": 1}, sort=[("_id", -1)])
    if sample is None:
        return {"documents": 0}
    doc_id = sample["_id"]
    probes: dict[str, dict[str, Any]] = {
        "find_one {_id}": {"filter": {"_id": doc_id}},
        "relay claim {_id, outbox_claim: null, outbox_due_at: {$ne: null}}": {
            "filter": {"_id": doc_id, CLAIM: None, DUE_AT: {"$ne": None}}
        },
        "relay release {_id, outbox_claim: token}": {"filter": {"_id": doc_id, CLAIM: "probe"}},
    }
    database = collection.database
    results: dict[str, Any] = {
        "collection": collection.name,
        "documents": await collection.estimated_document_count(),
    }
    for label, probe in probes.items():
        explained = await database.command(
            "explain", {"find": collection.name, "filter": probe["filter"], "limit": 1}
        )
        began = time.perf_counter()
        await collection.find_one(probe["filter"])
        read_ms = (time.perf_counter() - began) * 1000
        results[label] = {
            "find_one_ms": round(read_ms, 1),
            "filter_pushdown": explained.get("filterPushdown"),
        }
    # The inline relay's one write: an update by `_id` alone (pulling from a field no document
    # has, so nothing changes).
    began = time.perf_counter()
    await collection.update_one({"_id": doc_id}, {"$pullAll": {"bench_probe_absent": [1]}})
    results["inline relay pull: update {_id} (changes nothing)"] = {
        "ms": round((time.perf_counter() - began) * 1000, 1)
    }
    # The sweep's claim is a findAndModify; its filter matches nothing here (the claim field is
    # set to a token no document holds), so the probe changes no data.
    began = time.perf_counter()
    await collection.find_one_and_update(
        {"_id": doc_id, CLAIM: "no-such-claim", DUE_AT: {"$ne": None}},
        {"$set": {"bench_probe": True}},
        return_document=ReturnDocument.AFTER,
    )
    results["findAndModify {_id, outbox_claim, outbox_due_at} (matches none)"] = {
        "ms": round((time.perf_counter() - began) * 1000, 1)
    }
    began = time.perf_counter()
    await (
        collection.find({DUE_AT: {"$lte": utc_now()}}, projection={"_id": 1})
        .sort(DUE_AT, 1)
        .limit(100)
        .to_list()
    )
    results["outbox sweep find {outbox_due_at: {$lte: now}} sort limit 100"] = {
        "ms": round((time.perf_counter() - began) * 1000, 1)
    }
    return results

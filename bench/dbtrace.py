"""Run a service with every MongoDB command it sends timed: `python -m bench.dbtrace
hirestream.notifications` (BENCH_DBTRACE_OUT names the JSON file written at exit).

A wall-clock profile for I/O-bound paths: a CPU profiler (py-spy) shows where the process
computes, not what it waits for, and an asyncio service waits in one `select` whatever it waits
on. PyMongo's command monitoring sees each command's round trip as the service experiences it
(queueing in the database server included). Commands are grouped by name, collection and the
shape of their filter (field names and operators, values left out). The service's own code is
not touched: the listener is registered before the service module is imported and runs it as
`python -m` would.
"""

from __future__ import annotations

import atexit
import json
import os
import runpy
import signal
import sys
import threading
from collections import defaultdict
from typing import Any

from pymongo import monitoring

SHAPED_COMMANDS = {"find": "filter", "findAndModify": "query", "count": "query"}


def shape(value: Any) -> Any:
    """A filter without its values: {"_id": "?", "outbox_due_at": {"$ne": "?"}}."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return [shape(value[0])]
    return "?"


def describe(command_name: str, command: dict[str, Any]) -> str:
    collection = command.get(command_name)
    collection = collection if isinstance(collection, str) else ""
    if command_name in SHAPED_COMMANDS:
        filters = command.get(SHAPED_COMMANDS[command_name]) or {}
    elif command_name in ("update", "delete"):
        statements = command.get("updates") or command.get("deletes") or [{}]
        filters = statements[0].get("q", {})
    elif command_name == "aggregate":
        filters = {"pipeline": [next(iter(stage)) for stage in command.get("pipeline", [])]}
    else:
        filters = {}
    sort = command.get("sort")
    suffix = f" sort {json.dumps(shape(sort))}" if sort else ""
    return f"{command_name} {collection} {json.dumps(shape(filters), sort_keys=True)}{suffix}"


class CommandTimer(monitoring.CommandListener):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[tuple[Any, int], str] = {}
        self.totals: dict[str, list[float]] = defaultdict(list)

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        with self._lock:
            self._pending[(event.connection_id, event.request_id)] = describe(
                event.command_name, dict(event.command)
            )

    def _finish(self, connection_id: Any, request_id: int, micros: int) -> None:
        with self._lock:
            label = self._pending.pop((connection_id, request_id), None)
            if label is not None:
                self.totals[label].append(micros / 1e6)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        self._finish(event.connection_id, event.request_id, event.duration_micros)

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self._finish(event.connection_id, event.request_id, event.duration_micros)

    def report(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = []
            for label, durations in self.totals.items():
                ordered = sorted(durations)
                rows.append(
                    {
                        "command": label,
                        "count": len(ordered),
                        "total_s": round(sum(ordered), 3),
                        "mean_ms": round(sum(ordered) / len(ordered) * 1000, 2),
                        "p50_ms": round(ordered[len(ordered) // 2] * 1000, 2),
                        "max_ms": round(ordered[-1] * 1000, 2),
                    }
                )
        return sorted(rows, key=lambda row: row["total_s"], reverse=True)


def main() -> None:
    if len(sys.argv) < 2:
        raise SystemExit("usage: python -m bench.dbtrace MODULE [ARGS...]")
    module = sys.argv[1]
    out = os.environ.get("BENCH_DBTRACE_OUT", "dbtrace.json")
    timer = CommandTimer()
    monitoring.register(timer)

    def write() -> None:
        with open(out, "w") as file:
            json.dump({"module": module, "commands": timer.report()}, file, indent=1)

    atexit.register(write)

    def on_sigterm(signum: int, _frame: object) -> None:
        # uvicorn restores this handler after its graceful shutdown and raises SIGTERM again;
        # the default action would end the process without running atexit.
        write()
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_sigterm)
    sys.argv = [module, *sys.argv[2:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()

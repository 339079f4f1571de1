"""The whole system as real processes (postings, applications, notifications) on the real
servers, for end-to-end and fault tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.processes import ServiceProcess
from tests.support.servers import free_port, kafka_env

SERVICES = ("postings", "applications", "notifications")


@dataclass
class System:
    processes: dict[str, ServiceProcess]
    databases: dict[str, str] = field(default_factory=dict)

    def url(self, name: str) -> str:
        return self.processes[name].url

    def logs(self) -> str:
        return "\n".join(p.log_path.read_text(errors="replace") for p in self.processes.values())


@contextmanager
def running_system(
    base_env: dict[str, str],
    log_dir: Path,
    *,
    database_suffix: str,
    extra_env: dict[str, str] | None = None,
) -> Iterator[System]:
    """Start the three services (each on a free port, its own database), wait until all
    answer /readyz, and SIGTERM them at the end."""
    databases = {name: f"{name}_{database_suffix}" for name in SERVICES}
    processes = {
        name: ServiceProcess(
            name=name,
            port=free_port(),
            env={
                **base_env,
                **kafka_env(base_env["KAFKA_BOOTSTRAP_SERVERS"], name),
                "MONGODB_DATABASE": databases[name],
                "LOG_FORMAT": "json",
                "WEBHOOK_ALLOW_PRIVATE": "true",
                **(extra_env or {}),
            },
            log_path=log_dir / f"{name}.log",
        )
        for name in SERVICES
    }
    try:
        for process in processes.values():
            process.start()
        for process in processes.values():
            process.wait_ready()
        yield System(processes=processes, databases=databases)
    finally:
        for process in processes.values():
            process.stop()

"""The processes a benchmark starts: the services (exactly as they run in production, `python
-m hirestream.<name>`), the bare baseline app, and a sampler of their memory."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from tests.support.processes import ServiceProcess

MIB = 1024 * 1024


@dataclass
class BenchProcess(ServiceProcess):
    """A service process; `module` and `args` let the same class run the baseline app, and
    `python_args` run it under a profiler (`-m pyinstrument ...`)."""

    module: str = ""
    args: list[str] = field(default_factory=list)
    python_args: list[str] = field(default_factory=list)

    def start(self) -> None:
        env = {**os.environ, **self.env, "PORT": str(self.port)}
        module = self.module or f"hirestream.{self.name}"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 - our interpreter, our module
                [sys.executable, *self.python_args, "-m", module, *self.args],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError(f"{self.name} is not started")
        return self.process.pid


@dataclass
class MemoryPeak:
    peak_mib: float = 0.0
    last_mib: float = 0.0
    samples: int = 0
    by_phase: dict[str, float] = field(default_factory=dict)
    cpu_s_by_phase: dict[str, float] = field(default_factory=dict)
    last_cpu_s: float | None = None


class MemorySampler:
    """Samples the RSS and CPU time of registered processes every `interval_s` in a background
    thread: each one's peak RSS, overall and per phase (the benchmark running at the time),
    and the CPU seconds it used in each phase."""

    def __init__(self, interval_s: float = 0.5) -> None:
        self.interval_s = interval_s
        self.phase = "setup"
        self.peaks: dict[str, MemoryPeak] = {}
        self._watched: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)

    def watch(self, label: str, pid: int) -> None:
        with self._lock:
            self._watched[label] = pid
            self.peaks.setdefault(label, MemoryPeak()).last_cpu_s = None

    def unwatch(self, label: str) -> None:
        with self._lock:
            self._watched.pop(label, None)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            with self._lock:
                watched = dict(self._watched)
                phase = self.phase
            for label, pid in watched.items():
                try:
                    process = psutil.Process(pid)
                    rss = process.memory_info().rss / MIB
                    times = process.cpu_times()
                except psutil.Error:
                    continue
                cpu = float(times.user + times.system)
                with self._lock:
                    peak = self.peaks[label]
                    peak.samples += 1
                    peak.last_mib = rss
                    peak.peak_mib = max(peak.peak_mib, rss)
                    peak.by_phase[phase] = max(peak.by_phase.get(phase, 0.0), rss)
                    if peak.last_cpu_s is not None and cpu >= peak.last_cpu_s:
                        used = cpu - peak.last_cpu_s
                        peak.cpu_s_by_phase[phase] = peak.cpu_s_by_phase.get(phase, 0.0) + used
                    peak.last_cpu_s = cpu


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


def machine_cpu_seconds() -> float:
    """CPU time the machine's cores have spent busy so far, whatever process ran."""
    times = psutil.cpu_times()
    busy = ("user", "nice", "system", "irq", "softirq", "steal")
    return float(sum(getattr(times, name, 0.0) for name in busy))


def log_dir(root: Path) -> Path:
    path = root / "logs"
    path.mkdir(parents=True, exist_ok=True)
    return path

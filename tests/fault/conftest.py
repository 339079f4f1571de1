"""Fault tests report their figures (sent, acknowledged, events, notifications, lost, doubled,
recovery time) through the `fault_report` fixture; they are printed at the end of the run and
written to `.stack/fault-report.json`, from which docs/reliability.md takes its numbers."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPORTS: list[dict[str, Any]] = []
REPORT_FILE = Path(__file__).resolve().parents[2] / ".stack" / "fault-report.json"

FaultReport = Callable[..., None]


@pytest.fixture
def fault_report(request: pytest.FixtureRequest) -> FaultReport:
    def report(**figures: Any) -> None:
        REPORTS.append({"test": request.node.name, **figures})

    return report


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not REPORTS:
        return
    terminalreporter.section("fault test figures")
    for report in REPORTS:
        terminalreporter.write_line(json.dumps(report, default=str))
    REPORT_FILE.parent.mkdir(parents=True, exist_ok=True)
    REPORT_FILE.write_text(json.dumps(REPORTS, indent=2, default=str) + "\n")

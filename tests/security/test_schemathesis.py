"""schemathesis against each service's own OpenAPI document (`/openapi.json`), with the three
services running as real processes on the real Kafka and MongoDB.

Each service is fuzzed twice, with an employer's token and with a candidate's: between them
they get past every route's role check. Before fuzzing, the employer publishes a posting and
registers a webhook, the candidate applies and saves an alert, and both are notified; half of
the path ids schemathesis sends are these real ones (a schemathesis dictionary), so fuzzed
requests reach real resources too, not only 404s.

Checks: no response is a server error (`not_a_server_error`), and every response fits the
schema its OpenAPI document gives for it (`response_schema_conformance`). Not
`status_code_conformance`: the documents do not list every status the services answer with
(docs/security.md names the gaps).

Bounded and repeatable: deterministic generation, at most `MAX_EXAMPLES` fuzzed cases per
operation on top of the coverage phase's boundary values, no stateful phase, one worker (two
sometimes die of a runtime error inside hypothesis' lambda-source cache, which is not
thread-safe). The write rate limit is lifted for the fuzzed services
(`RATE_LIMIT_WRITES=100000/minute`): at the default 120 per minute most fuzzed writes would
only meet 429. Each run prints its figures (operations tested, requests made, failures);
docs/security.md quotes them.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import bearer, candidate_email
from tests.support.factories import posting_body
from tests.support.polling import eventually
from tests.support.system import System, running_system

pytestmark = pytest.mark.e2e

RUN = uuid.uuid4().hex[:8]
SERVICES = ("postings", "applications", "notifications")
CALLERS = {
    "employer": bearer("employer", sub=f"fuzz-recruiter-{RUN}", org=f"fuzz-org-{RUN}"),
    "candidate": bearer("candidate", sub=f"fuzz-candidate-{RUN}"),
}
CHECKS = ("not_a_server_error", "response_schema_conformance")
MAX_EXAMPLES = 25
RUN_TIMEOUT_S = 300  # a safety net: a run takes 10 to 30 s
REAL_ID_PROBABILITY = 0.5


@dataclass(frozen=True)
class Figures:
    service: str
    caller: str
    operations: int
    tested: int
    requests: int
    failures: list[dict[str, Any]]
    errors: list[dict[str, Any]]
    seconds: float

    def line(self) -> str:
        failed = sum(int(group["count"]) for group in self.failures)
        return (
            f"{self.service:<14} as {self.caller:<9} operations {self.tested}/{self.operations}"
            f"  requests {self.requests:>4}  failures {failed}  errors {len(self.errors)}"
            f"  {self.seconds:5.1f} s"
        )


@pytest.fixture(scope="module")
def system(base_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    with running_system(
        base_env,
        tmp_path_factory.mktemp("fuzz-logs"),
        database_suffix=f"fuzz_{RUN}",
        extra_env={"RATE_LIMIT_WRITES": "100000/minute"},
    ) as running:
        yield running


def created(response: httpx.Response, id_field: str) -> str:
    assert response.status_code == 201, response.text
    value: str = response.json()[id_field]
    return value


@pytest.fixture(scope="module")
async def real_ids(system: System) -> dict[str, list[str]]:
    """Resources of the fuzzing employer and candidate, by path parameter name."""
    employer, candidate = CALLERS["employer"], CALLERS["candidate"]
    clients = {name: httpx.AsyncClient(base_url=system.url(name), timeout=10) for name in SERVICES}
    async with clients["postings"], clients["applications"], clients["notifications"]:
        notifications = clients["notifications"]
        webhook = await notifications.post(
            "/webhooks",
            json={
                "url": "http://127.0.0.1:9/x",  # nothing listens there: deliveries fail
                "event_types": ["application.submitted"],
                "secret": "whsec-0123456789abcdef",
            },
            headers=employer,
        )
        alert = await notifications.post("/alerts", json={"skills": ["kafka"]}, headers=candidate)
        posting = await clients["postings"].post("/postings", json=posting_body(), headers=employer)
        posting_id = created(posting, "posting_id")

        async def apply() -> httpx.Response | None:
            response = await clients["applications"].post(
                f"/postings/{posting_id}/applications",
                json={
                    "name": "Ada Lovelace",
                    "email": candidate_email(f"fuzz-candidate-{RUN}"),
                    "resume_url": "https://cv.example.com/ada.pdf",
                    "consent": {"processing": True},
                    "skills": ["python"],
                },
                headers=candidate,
            )
            return None if response.status_code == 404 else response  # not there yet

        application_id = created(
            await eventually(apply, timeout_s=60, every_s=0.5), "application_id"
        )

        async def notified(headers: dict[str, str]) -> str:
            async def first() -> str | None:
                items = (await notifications.get("/notifications", headers=headers)).json()["items"]
                return str(items[0]["notification_id"]) if items else None

            return await eventually(first, timeout_s=60, every_s=0.5)

        notification_ids = await asyncio.gather(notified(candidate), notified(employer))
        return {
            "posting_id": [posting_id],
            "application_id": [application_id],
            "notification_id": list(notification_ids),
            "alert_id": [created(alert, "alert_id")],
            "webhook_id": [created(webhook, "webhook_id")],
        }


def config_with(real_ids: dict[str, list[str]]) -> str:
    """A schemathesis.toml that sends the real ids for half of the path parameters."""
    lines = []
    for name, values in real_ids.items():
        lines += [f"[dictionaries.{name}]", f"values = {json.dumps(values)}", ""]
    lines.append("[parameters]")
    for name in real_ids:
        lines.append(
            f'"path.{name}" = {{ dictionary = "{name}", probability = {REAL_ID_PROBABILITY} }}'
        )
    return "\n".join(lines) + "\n"


def schemathesis(
    url: str, headers: dict[str, str], real_ids: dict[str, list[str]], workdir: Path
) -> tuple[str, dict[str, Any]]:
    """Run `st run` once; its terminal output and its JSON report."""
    config = workdir / "schemathesis.toml"
    config.write_text(config_with(real_ids))  # explicit: no schemathesis.toml found on the way
    report = workdir / "report.json"
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(config),
        "--no-color",
        "run",
        f"{url}/openapi.json",
        "--checks",
        ",".join(CHECKS),
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--generation-deterministic",
        "--no-shrink",
        "--workers",
        "1",
        "--request-timeout",
        "10",
        "--report",
        "json",
        "--report-json-path",
        str(report),
        *(option for name, value in headers.items() for option in ("-H", f"{name}: {value}")),
    ]
    finished = subprocess.run(
        command, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, cwd=workdir, check=False
    )
    output = finished.stdout + finished.stderr
    assert report.exists(), output
    document: dict[str, Any] = json.loads(report.read_text())
    return output, document


@pytest.mark.parametrize("caller", list(CALLERS))
@pytest.mark.parametrize("service", SERVICES)
def test_no_server_errors_and_every_response_fits_the_openapi(
    system: System,
    real_ids: dict[str, list[str]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    service: str,
    caller: str,
) -> None:
    started = time.monotonic()
    output, report = schemathesis(system.url(service), CALLERS[caller], real_ids, tmp_path)
    operations = report["operations"]
    found = Figures(
        service=service,
        caller=caller,
        operations=operations["selected"],
        tested=operations["tested"],
        requests=report["test_cases"]["generated"],
        failures=report["failures"],
        errors=report["errors"],
        seconds=time.monotonic() - started,
    )
    with capsys.disabled():
        print(f"\nschemathesis: {found.line()}")
    assert report["stop_reason"] == "completed", output
    assert found.tested == found.operations > 0, output
    assert found.failures == [], output
    assert found.errors == [], output

"""Each service starts from its own dependency set, built exactly as its image builds it
(`uv sync --frozen --no-dev --no-editable --package hirestream-<name>`, Dockerfile), and answers
/readyz on the real servers. The development virtualenv holds every member's dependencies, so
an undeclared import would pass everywhere else and fail only in the image. The operator CLI,
`hirestream`, comes with each of them."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from tests.support.processes import ServiceProcess
from tests.support.servers import REPO, free_port, kafka_env

pytestmark = pytest.mark.e2e

SERVICES = ("postings", "applications", "notifications")


def uv() -> str:
    found = shutil.which("uv") or str(REPO / ".stack" / "tools" / "bin" / "uv")
    if not Path(found).is_file():
        pytest.fail("uv not found: ./dev.sh test installs it into .stack/tools")
    return found


def image_environment(service: str, target: Path) -> Path:
    """The service's virtualenv as the Dockerfile makes it; returns its python."""
    result = subprocess.run(
        [
            uv(),
            "sync",
            "--frozen",
            "--no-dev",
            "--no-editable",
            "--package",
            f"hirestream-{service}",
        ],
        cwd=REPO,
        env={**os.environ, "UV_PROJECT_ENVIRONMENT": str(target), "UV_PYTHON_DOWNLOADS": "never"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return target / "bin" / "python"


@pytest.mark.parametrize("service", SERVICES)
def test_the_service_starts_from_its_image_dependencies_alone(
    service: str, base_env: dict[str, str], tmp_path: Path
) -> None:
    python = image_environment(service, tmp_path / "venv")
    database = f"{service}_image_{tmp_path.name[-8:]}"
    process = ServiceProcess(
        name=service,
        port=free_port(),
        env={
            **base_env,
            **kafka_env(base_env["KAFKA_BOOTSTRAP_SERVERS"], service),
            "MONGODB_DATABASE": database,
        },
        log_path=tmp_path / f"{service}.log",
        python=str(python),
    )
    process.start()
    try:
        process.wait_ready()
    finally:
        # uvicorn ends by the signal it handled, once shut down.
        assert process.stop() in {0, -signal.SIGTERM}, process.tail()

    # The operator CLI is in every image, and reads the servers from the same environment.
    cli = subprocess.run(
        [str(python.with_name("hirestream")), "outbox", "status"],
        env={
            **base_env,
            **kafka_env(base_env["KAFKA_BOOTSTRAP_SERVERS"], "operator"),
            "MONGODB_DATABASE": database,
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout.startswith("DATABASE"), cli.stdout + cli.stderr
    assert database in cli.stdout

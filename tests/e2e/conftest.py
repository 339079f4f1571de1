"""The system `./dev.sh up` starts on the default ports, started once for the tests that read
the README and the runbook and run their commands as written."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.documents import readme_shell_blocks, run


# Package scope: stopped after the last e2e test, not left running through the later layers.
@pytest.fixture(scope="package")
def dev_system() -> Iterator[None]:
    """The quick start's first command, as the README gives it. A system that was already up
    is left running; one started here is stopped again."""
    quick_start = readme_shell_blocks("Quick start")[0].splitlines()
    up = next(line for line in quick_start if "up" in line.split())
    was_up = run("./dev.sh status", timeout_s=60).returncode == 0
    started = run(up)
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        yield
    finally:
        if not was_up:
            run("./dev.sh down", timeout_s=120)

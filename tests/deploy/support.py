"""What the deployment tests compare: what the code declares and what the artefacts say.

The code side is derived, never copied: the services are the workspace members under
`services/`, their settings are the `ServiceSettings` subclass each `app.py` defines (every
field is an environment variable, upper-cased), their tracing variables are the `OTEL_*` names
`hirestream.shared.tracing` reads, and their topics are the `published` and `consumed` event
types of the `ServiceClients` each `create_app` builds (plus the event catalog), with
`<topic>.dlq` for every consumed one.

The artefact side comes from the real tools (`kustomize build`, `docker-compose config`),
found in `.stack/cache/bin` or on PATH. `deploy/tools.sh` (run by `./dev.sh test`) provides
them; a missing tool fails the test that needs it with a line saying so, never a skip.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic.fields import FieldInfo

from hirestream.shared import tracing
from hirestream.shared.events.catalog import EVENT_TYPES
from hirestream.shared.settings import ServiceSettings

ROOT = Path(__file__).resolve().parents[2]
TOOLS_BIN = ROOT / ".stack" / "cache" / "bin"
K8S = ROOT / "deploy" / "k8s"
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"

# A stand-in for the JWT secret, made per run: random, so that settings which refuse
# placeholder-looking secrets outside development accept it.
FAKE_JWT_SECRET = secrets.token_urlsafe(48)
FAKE_UNSUBSCRIBE_SECRET = secrets.token_urlsafe(48)
# The secrets a service refuses to start without outside development (other services ignore
# those they do not read).
FAKE_SECRETS = {"jwt_secret": FAKE_JWT_SECRET, "unsubscribe_secret": FAKE_UNSUBSCRIBE_SECRET}

Document = dict[str, Any]


def tool(name: str) -> Path:
    """The path of a validation tool, or fail the test saying how to get it."""
    for candidate in (TOOLS_BIN / name, ROOT / ".venv" / "bin" / name):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which(name)
    if found:
        return Path(found)
    pytest.fail(
        f"{name} not found in .stack/cache/bin, .venv/bin or PATH: run `bash deploy/tools.sh` "
        "(./dev.sh test does it before pytest)",
        pytrace=False,
    )


def run(
    command: list[str | Path], *, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(part) for part in command],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def load_documents(text: str) -> list[Document]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def load_yaml(path: Path) -> Document:
    loaded: Document = yaml.safe_load(path.read_text())
    return loaded


# ---- the code side ----------------------------------------------------------------------


def service_names() -> list[str]:
    """The deployable services: the workspace members under services/."""
    return sorted(p.name for p in (ROOT / "services").iterdir() if (p / "pyproject.toml").is_file())


def settings_class(service: str) -> type[ServiceSettings]:
    """The settings class the service's composition root defines (a ServiceSettings subclass)."""
    module = importlib.import_module(f"hirestream.{service}.app")
    found = [
        value
        for value in vars(module).values()
        if inspect.isclass(value)
        and issubclass(value, ServiceSettings)
        and value.__module__ == module.__name__
    ]
    assert len(found) == 1, f"hirestream.{service}.app should define one settings class: {found}"
    return found[0]


@dataclass(frozen=True)
class Setting:
    env_name: str
    field: FieldInfo

    @property
    def is_secret(self) -> bool:
        """Typed SecretStr (possibly optional): a credential or a URL that may carry one."""
        return "SecretStr" in repr(self.field.annotation)

    @property
    def is_optional(self) -> bool:
        """Not required and unset (None) by default: absence is a meaningful value."""
        return not self.field.is_required() and self.field.default is None


def settings_of(service: str) -> dict[str, Setting]:
    """Every environment variable the service reads, by name."""
    cls = settings_class(service)
    prefix = str(cls.model_config.get("env_prefix", ""))
    result = {}
    for name, field in cls.model_fields.items():
        alias = field.validation_alias if isinstance(field.validation_alias, str) else None
        env_name = (alias or prefix + name).upper()
        result[env_name] = Setting(env_name, field)
    return result


def validate_settings(service: str, env: dict[str, str]) -> ServiceSettings:
    """Build the service's settings from these variables only, as the process would."""
    cls = settings_class(service)
    return cls.model_validate({name.lower(): value for name, value in env.items()})


@dataclass(frozen=True)
class ServiceTopics:
    published: frozenset[str]
    consumed: frozenset[str]
    dead_letters: frozenset[str]
    # Topics whose events carry personal data (and their DLQs): bounded retention.
    personal_data: frozenset[str]

    @property
    def all(self) -> frozenset[str]:
        return self.published | self.consumed | self.dead_letters


@cache
def topics_of(service: str) -> ServiceTopics:
    """The topics the service's clients declare (nothing connects: clients are lazy)."""
    module = importlib.import_module(f"hirestream.{service}.app")
    settings = settings_class(service).model_validate(FAKE_SECRETS)
    app = module.create_app(settings)
    clients = app.state.clients
    try:
        return ServiceTopics(
            published=frozenset(t.topic for t in clients.published),
            consumed=frozenset(t.topic for t in clients.consumed),
            dead_letters=frozenset(t.dlq_topic for t in clients.consumed),
            personal_data=frozenset(clients.topics.personal_data()),
        )
    finally:
        asyncio.run(clients.mongo.close())


@cache
def api_paths(service: str) -> frozenset[str]:
    """The path templates of the service's HTTP API, as its OpenAPI document lists them."""
    module = importlib.import_module(f"hirestream.{service}.app")
    settings = settings_class(service).model_validate(FAKE_SECRETS)
    app = module.create_app(settings)
    try:
        return frozenset(app.openapi()["paths"])
    finally:
        asyncio.run(app.state.clients.mongo.close())


@cache
def tracing_variables() -> frozenset[str]:
    """The `OTEL_*` variables the deployment files may set, which are not settings: those
    `hirestream.shared.tracing` reads or names, and the sampler's argument, which the SDK reads
    with the sampler. Others the SDK would take (OTEL_TRACES_EXPORTER, say) are not honoured
    by tracing.py or not meant to be changed there."""
    named = set(re.findall(r"\bOTEL_[A-Z0-9_]*[A-Z0-9]\b", inspect.getsource(tracing)))
    if "OTEL_TRACES_SAMPLER" in named:
        named.add("OTEL_TRACES_SAMPLER_ARG")
    return frozenset(named)


def personal_data_topics() -> frozenset[str]:
    return frozenset().union(*(topics_of(service).personal_data for service in service_names()))


def required_topics() -> frozenset[str]:
    """Every topic some service publishes or consumes, every DLQ, and the whole catalog."""
    topics: set[str] = {event_type.topic for event_type in EVENT_TYPES}
    for service in service_names():
        topics |= topics_of(service).all
    return frozenset(topics)


# ---- the artefact side -------------------------------------------------------------------


def overlays() -> list[str]:
    return sorted(
        p.name for p in (K8S / "overlays").iterdir() if (p / "kustomization.yaml").is_file()
    )


@dataclass(frozen=True)
class Rendered:
    """One overlay as `kustomize build` renders it."""

    name: str
    text: str
    documents: list[Document]

    def of_kind(self, kind: str) -> list[Document]:
        return [doc for doc in self.documents if doc.get("kind") == kind]

    def named(self, kind: str, name: str) -> Document:
        found = [doc for doc in self.of_kind(kind) if doc["metadata"]["name"] == name]
        assert len(found) == 1, f"{self.name}: expected one {kind} {name}, found {len(found)}"
        return found[0]

    def deployment(self, service: str) -> Document:
        return self.named("Deployment", service)

    def container(self, service: str) -> Document:
        containers = self.deployment(service)["spec"]["template"]["spec"]["containers"]
        assert len(containers) == 1, f"{self.name}/{service}: one container expected"
        container: Document = containers[0]
        return container

    def config(self, service: str) -> dict[str, str]:
        """The ConfigMap data the service's container takes all of (envFrom)."""
        data: dict[str, str] = {}
        for source in self.container(service).get("envFrom", []):
            ref = source.get("configMapRef")
            assert ref, f"{self.name}/{service}: envFrom only from ConfigMaps (Secrets by key)"
            data |= self.named("ConfigMap", ref["name"]).get("data", {})
        return data

    def env(self, service: str) -> dict[str, Document]:
        """The container's explicit env entries by name."""
        return {entry["name"]: entry for entry in self.container(service).get("env", [])}

    def env_names(self, service: str) -> set[str]:
        return set(self.config(service)) | set(self.env(service))


def build_overlay(name: str) -> Rendered:
    result = run([tool("kustomize"), "build", K8S / "overlays" / name])
    assert result.returncode == 0, f"kustomize build {name} failed:\n{result.stderr}"
    return Rendered(name, result.stdout, load_documents(result.stdout))


def compose_required_variables() -> list[str]:
    """The variables docker-compose.yml refuses to run without (`${NAME:?message}`)."""
    lines = COMPOSE_FILE.read_text().splitlines()
    text = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    return sorted(set(re.findall(r"\$\{([A-Z0-9_]+):\?", text)))


def compose_env() -> dict[str, str]:
    """The process environment for docker-compose: ours plus a random stand-in for every
    secret it requires (the JWT secret as the settings tests know it)."""
    fakes = {name: secrets.token_urlsafe(24) for name in compose_required_variables()}
    return {**os.environ, **fakes, "JWT_SECRET": FAKE_JWT_SECRET}


def compose_config() -> Document:
    """docker-compose.yml as Compose resolves it (anchors merged, variables interpolated)."""
    result = run([tool("docker-compose"), "-f", COMPOSE_FILE, "config"], env=compose_env())
    assert result.returncode == 0, f"docker-compose config failed:\n{result.stderr}"
    config: Document = yaml.safe_load(result.stdout)
    return config


def raw_compose_env(service: str) -> dict[str, str]:
    """A compose service's environment as written (before interpolation)."""
    text = COMPOSE_FILE.read_text()
    loaded: Document = yaml.safe_load(text)
    env: dict[str, str] = loaded["services"][service]["environment"]
    return {key: str(value) for key, value in env.items()}


def walk(node: Any) -> Iterator[Any]:
    """Every value nested in a parsed YAML document."""
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)

"""docker-compose.yml: valid for Debian's docker-compose 1.29 (`config -q`, the old schema
without a top-level `name:`), infrastructure from official images, every long-running
container health-checked, the services started only once what they need is healthy.
"""

from __future__ import annotations

import os
import re

import pytest

from tests.deploy.support import (
    COMPOSE_FILE,
    Document,
    compose_env,
    load_yaml,
    run,
    service_names,
    tool,
)

SERVICES = service_names()
ONE_SHOT = {"kafka-init"}


def test_config_is_valid() -> None:
    result = run([tool("docker-compose"), "-f", COMPOSE_FILE, "config", "-q"], env=compose_env())
    assert result.returncode == 0, result.stderr


def test_refuses_to_run_without_a_jwt_secret() -> None:
    env = {key: value for key, value in os.environ.items() if key != "JWT_SECRET"}
    result = run([tool("docker-compose"), "-f", COMPOSE_FILE, "config", "-q"], env=env)
    assert result.returncode != 0
    assert "JWT_SECRET" in result.stderr


def test_old_schema_no_top_level_name() -> None:
    raw = load_yaml(COMPOSE_FILE)
    assert "name" not in raw
    assert "version" not in raw


def test_infrastructure_from_official_images(compose: Document) -> None:
    services = compose["services"]
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka-init"]["image"] == services["kafka"]["image"]
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft
    assert services["mongodb"]["image"].startswith("mongo:")
    assert services["mailpit"]["image"].startswith("axllent/mailpit:")
    assert any("8025" in str(port) for port in services["mailpit"]["ports"]), "Mailpit web UI"


def test_every_long_running_container_is_health_checked(compose: Document) -> None:
    for name, service in compose["services"].items():
        if name in ONE_SHOT:
            continue
        assert service.get("healthcheck", {}).get("test"), f"{name}: no healthcheck"


@pytest.mark.parametrize("service", SERVICES)
def test_service_is_built_from_the_dockerfile(compose: Document, service: str) -> None:
    build = compose["services"][service]["build"]
    assert build["target"] == service
    assert build.get("dockerfile", "Dockerfile") == "Dockerfile"


@pytest.mark.parametrize("service", SERVICES)
def test_service_starts_after_its_dependencies(compose: Document, service: str) -> None:
    depends = compose["services"][service]["depends_on"]
    assert depends["kafka"]["condition"] == "service_healthy"
    assert depends["mongodb"]["condition"] == "service_healthy"
    assert depends["kafka-init"]["condition"] == "service_completed_successfully"
    if service == "notifications":
        assert depends["mailpit"]["condition"] == "service_healthy"


@pytest.mark.parametrize("service", SERVICES)
def test_service_is_hardened_and_stops_gracefully(compose: Document, service: str) -> None:
    spec = compose["services"][service]
    assert spec["read_only"] is True
    assert spec["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in spec["security_opt"]
    assert "/tmp" in spec["tmpfs"]
    grace = re.fullmatch(r"(\d+)s", spec["stop_grace_period"])
    assert grace, "stop_grace_period in seconds, e.g. 30s"
    seconds = int(grace[1])
    assert seconds > float(spec["environment"]["SHUTDOWN_TIMEOUT_S"])


@pytest.mark.parametrize("service", SERVICES)
def test_ports_are_published_on_loopback_only(compose: Document, service: str) -> None:
    for port in compose["services"][service].get("ports", []):
        assert str(port).startswith("127.0.0.1:"), port

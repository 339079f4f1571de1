"""docker-compose.yml: valid for Debian's docker-compose 1.29 (`config -q`, the old schema
without a top-level `name:`), infrastructure from official images, every long-running
container health-checked, the services started only once what they need is healthy, Kafka
secured as in production (SCRAM logins, the StandardAuthorizer, the ACL table of the local
stack), each service its own principal, and no secret written down.
"""

from __future__ import annotations

import re

import pytest

from tests.deploy.support import (
    COMPOSE_FILE,
    K8S,
    ROOT,
    Document,
    compose_env,
    compose_required_variables,
    load_documents,
    load_yaml,
    run,
    service_names,
    tool,
)

SERVICES = service_names()
ONE_SHOT = {"kafka-init"}
# Long-running, yet nothing to run a health check with, and nobody waits for them to be healthy.
UNPROBED = {
    "otel-collector": "the image holds the collector alone; spans it cannot take are dropped",
}


def test_config_is_valid() -> None:
    result = run([tool("docker-compose"), "-f", COMPOSE_FILE, "config", "-q"], env=compose_env())
    assert result.returncode == 0, result.stderr


def test_the_secrets_compose_requires() -> None:
    expected = {"JWT_SECRET", "UNSUBSCRIBE_SECRET", "KAFKA_OPERATOR_PASSWORD"} | {
        f"KAFKA_{service.upper()}_PASSWORD" for service in SERVICES
    }
    assert set(compose_required_variables()) == expected


@pytest.mark.parametrize("variable", compose_required_variables())
def test_refuses_to_run_without_each_secret(variable: str) -> None:
    env = {key: value for key, value in compose_env().items() if key != variable}
    result = run([tool("docker-compose"), "-f", COMPOSE_FILE, "config", "-q"], env=env)
    assert result.returncode != 0
    assert variable in result.stderr
    # The message names what is missing without echoing the others.
    for name, value in compose_env().items():
        if name in compose_required_variables() and name != variable:
            assert value not in result.stderr


def test_no_password_is_written_down() -> None:
    # Every password or secret in the file is a required variable of the environment, or (in
    # the containers' scripts) a shell variable: `$$NAME` or `$$(...)`.
    text = COMPOSE_FILE.read_text()
    assigned = re.findall(
        r"""(?i)(?:password|secret|user_[a-z]+)[A-Z_]*\\?"?\s*[:=]\s*\\?["']?([^\s"'\\;,]*)""",
        text,
    )
    assert assigned, "the pattern finds the file's passwords"
    for value in assigned:
        assert value.startswith("${") or value.startswith("$$"), f"a literal secret: {value!r}"


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
        test = service.get("healthcheck", {}).get("test")
        if name in UNPROBED:
            # Said so (`disable: true`, which Compose writes as NONE), not forgotten.
            assert test == ["NONE"], f"{name}: disable its healthcheck explicitly"
            for other in compose["services"].values():
                condition = other.get("depends_on", {}).get(name, {}).get("condition")
                assert condition in (None, "service_started"), f"nothing can wait for {name}"
            continue
        assert test, f"{name}: no healthcheck"
        assert test != ["NONE"], f"{name}: healthcheck disabled (or list it in UNPROBED)"


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


# ---- Kafka security ----------------------------------------------------------------------

ACL_TABLE = ROOT / "deploy" / "local" / "kafka" / "acls.tsv"
THIRTY_DAYS_MS = 30 * 24 * 3600 * 1000


def kafka_script(compose: Document, service: str) -> str:
    """The shell script a Kafka container runs (the last item of its command)."""
    command = compose["services"][service]["command"]
    script: str = command[-1]
    return script


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_logs_in_as_its_own_principal(compose: Document, service: str) -> None:
    env = compose["services"][service]["environment"]
    assert env["KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
    assert env["KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert env["KAFKA_SASL_USERNAME"] == service
    # Its password is its own variable, the one kafka-init sets its SCRAM credential from.
    raw = load_yaml(COMPOSE_FILE)["services"]
    password = raw[service]["environment"]["KAFKA_SASL_PASSWORD"]
    assert password == raw["kafka-init"]["environment"][f"{service.upper()}_PASSWORD"]
    others = {raw[other]["environment"]["KAFKA_SASL_PASSWORD"] for other in SERVICES}
    assert len(others) == len(SERVICES), "each service a password of its own"
    assert f'scram_user {service} "$${service.upper()}_PASSWORD"' in kafka_script(
        compose, "kafka-init"
    )


def test_kafka_takes_only_authenticated_clients_and_denies_by_default(compose: Document) -> None:
    env = compose["services"]["kafka"]["environment"]
    protocols = dict(
        pair.split(":") for pair in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    listeners = [entry.split("://")[0] for entry in env["KAFKA_LISTENERS"].split(",")]
    assert set(listeners) == set(protocols)
    assert all(protocol.startswith("SASL_") for protocol in protocols.values()), protocols
    # The listeners the containers and the host reach take SCRAM-SHA-512 only.
    reachable = {}
    for entry in env["KAFKA_ADVERTISED_LISTENERS"].split(","):
        name, _, address = entry.partition("://")
        reachable[name] = address
    assert (
        reachable["CLIENT"]
        == compose["services"]["postings"]["environment"]["KAFKA_BOOTSTRAP_SERVERS"]
    )
    for name, address in reachable.items():
        mechanisms = env[f"KAFKA_LISTENER_NAME_{name}_SASL_ENABLED_MECHANISMS"]
        if address.startswith("127.0.0.1:"):
            continue  # the node's own listener, on the container's loopback
        assert mechanisms == "SCRAM-SHA-512", name
    assert env["KAFKA_AUTHORIZER_CLASS_NAME"] == (
        "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    )
    assert env["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
    assert "User:operator" in env["KAFKA_SUPER_USERS"].split(";")


def test_operator_exists_from_the_first_start(compose: Document) -> None:
    # Adding the first SCRAM user needs a super user who can log in: operator is written into
    # the storage when it is formatted, before the image's own start.
    script = kafka_script(compose, "kafka")
    assert "kafka-storage.sh format" in script
    assert '--add-scram "SCRAM-SHA-512=[name=operator,password=$$OPERATOR_PASSWORD]"' in script
    assert script.rstrip().endswith("exec /etc/kafka/docker/run")
    healthcheck = " ".join(compose["services"]["kafka"]["healthcheck"]["test"])
    assert "--command-config /opt/kafka/config/operator.properties" in healthcheck


def test_kafka_init_grants_the_acl_table_of_the_local_stack(compose: Document) -> None:
    # One table for the local stack, compose and (test_kafka_acls.py) the KafkaUsers.
    init = compose["services"]["kafka-init"]
    mounts = dict(volume.split(":")[:2] for volume in init["volumes"])
    assert mounts[str(ACL_TABLE)] in kafka_script(compose, "kafka-init")
    script = kafka_script(compose, "kafka-init")
    assert "kafka kafka-acls.sh" in script
    assert '--command-config "$$config"' in script
    assert "operator" in script


def test_dead_letters_are_kept_as_the_runbook_says(compose: Document) -> None:
    init = compose["services"]["kafka-init"]["environment"]
    assert int(init["DEAD_LETTER_RETENTION_MS"]) == THIRTY_DAYS_MS
    assert '*.dlq) config_arg="--config retention.ms=$$DEAD_LETTER_RETENTION_MS"' in (
        kafka_script(compose, "kafka-init")
    )
    # The same as the KafkaTopics in Kubernetes, and what the runbook promises.
    topics = load_documents((K8S / "base" / "kafka-topics.yaml").read_text())
    dead_letters = [t for t in topics if t["spec"]["topicName"].endswith(".dlq")]
    assert dead_letters
    for topic in dead_letters:
        assert int(topic["spec"]["config"]["retention.ms"]) == THIRTY_DAYS_MS
    runbook = (ROOT / "docs" / "runbook.md").read_text()
    assert "30 days" in runbook


def test_the_smoke_start_provides_every_secret_compose_requires() -> None:
    workflow = (ROOT / ".github" / "workflows" / "ci.yml").read_text()
    for variable in compose_required_variables():
        assert re.search(rf"\b{variable}\b", workflow), f"ci.yml: the smoke start lacks {variable}"

"""Kafka security of the local stack with KAFKA_AUTH=scram: SASL/SCRAM-SHA-512 logins and the
ACLs of deploy/local/kafka/acls.tsv, checked with aiokafka.

The module starts a secured stack of its own (deploy/local/stack.sh on free ports in a temporary
folder) and shows: without credentials or with a wrong password nothing is possible; each service
principal produces to exactly the topics the table lets it write and consumes exactly those it
lets it read, in its own consumer groups only; the operator may do anything; credentials and ACLs
survive a kill -9 of the broker. One check needs no stack: the table grants each service what it
publishes and consumes, and the dead-letter topics of what it consumes.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    TopicAuthorizationFailedError,
)

from tests.support.servers import REPO, STACK_SCRIPT, consecutive_free_ports, free_port

pytestmark = pytest.mark.integration

ACL_TABLE = REPO / "deploy" / "local" / "kafka" / "acls.tsv"
SERVICES = ("postings", "applications", "notifications")
OPERATOR = "operator"
TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Grant:
    principal: str
    resource: str  # topic, group or cluster
    pattern: str  # literal or prefixed
    name: str
    operations: frozenset[str]


def read_acl_table() -> list[Grant]:
    grants = []
    for line in ACL_TABLE.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        principal, resource, pattern, name, operations = line.split("\t")
        grants.append(Grant(principal, resource, pattern, name, frozenset(operations.split(","))))
    return grants


GRANTS = read_acl_table()
ALL_TOPICS = sorted({grant.name for grant in GRANTS if grant.resource == "topic"})


def topics_granted(principal: str, operation: str) -> set[str]:
    return {
        grant.name
        for grant in GRANTS
        if grant.principal == principal
        and grant.resource == "topic"
        and grant.pattern == "literal"
        and operation in grant.operations
    }


def new_group(principal: str) -> str:
    """A fresh consumer group id the table lets `principal` read (fresh: reads from the start)."""
    grant = next(
        grant
        for grant in GRANTS
        if grant.principal == principal and grant.resource == "group" and "Read" in grant.operations
    )
    if grant.pattern == "literal":
        return grant.name
    separator = "" if grant.name.endswith(".") else "."
    return f"{grant.name}{separator}security-test-{uuid.uuid4().hex[:8]}"


# ---------------------------------------------------------------- the table against the contract

# What each service publishes and consumes (`published=` / `consumed=` where its app is composed).
OWNERSHIP: dict[str, tuple[set[str], set[str]]] = {
    "postings": (
        {"posting.created", "posting.updated", "posting.closed", "candidate.erased"},
        {"candidate.erasure_requested"},
    ),
    "applications": (
        {
            "application.submitted",
            "application.status_changed",
            "candidate.erasure_requested",
            "candidate.erased",
        },
        {
            "posting.created",
            "posting.updated",
            "posting.closed",
            # its own events, for the pipeline projection
            "application.submitted",
            "application.status_changed",
            "candidate.erasure_requested",
            "candidate.erased",
        },
    ),
    "notifications": (
        {"notification.delivered", "candidate.erased"},
        {
            "posting.created",
            "posting.closed",
            "application.submitted",
            "application.status_changed",
            "candidate.erasure_requested",
        },
    ),
}


@pytest.mark.parametrize("service", SERVICES)
def test_the_acl_table_grants_a_service_its_topics_and_no_others(service: str) -> None:
    published, consumed = OWNERSHIP[service]
    dead_letters = {f"{topic}.dlq" for topic in consumed}

    assert topics_granted(service, "Write") == published | dead_letters
    assert topics_granted(service, "Read") == consumed
    assert topics_granted(service, "Create") == published | consumed | dead_letters
    assert {
        (grant.resource, grant.pattern)
        for grant in GRANTS
        if grant.principal == service and grant.resource != "topic"
    } == {("group", "prefixed"), ("cluster", "literal")}
    assert any(
        grant.principal == service and "IdempotentWrite" in grant.operations for grant in GRANTS
    )


# ---------------------------------------------------------------- a secured stack


@dataclass(frozen=True)
class SecuredStack:
    bootstrap: str
    passwords: dict[str, str]  # principal -> password, as `stack.sh start` printed them
    env: dict[str, str]  # how to call stack.sh for this stack again

    def run(self, *args: str) -> str:
        return stack_sh(self.env, *args)


def stack_sh(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        ["bash", str(STACK_SCRIPT), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"stack.sh {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def parse_lines(output: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredStack]:
    kafka_port, controller_port = consecutive_free_ports(2)
    env = {
        "STACK_DIR": str(tmp_path_factory.mktemp("kafka-security")),
        "KAFKA_NODES": "1",
        "KAFKA_PORT": str(kafka_port),
        "KAFKA_CONTROLLER_PORT": str(controller_port),
        "MONGO_PORT": str(free_port()),
        "SMTP_PORT": str(free_port()),
        "KAFKA_AUTH": "scram",
    }
    try:
        printed = parse_lines(stack_sh(env, "start"))
        assert printed["KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
        assert printed["KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
        passwords = {}
        for principal in (OPERATOR, *SERVICES):
            suffix = principal.upper()
            assert printed[f"KAFKA_SASL_USERNAME_{suffix}"] == principal
            passwords[principal] = printed[f"KAFKA_SASL_PASSWORD_{suffix}"]
        yield SecuredStack(printed["KAFKA_BOOTSTRAP_SERVERS"], passwords, env)
    finally:
        subprocess.run(["bash", str(STACK_SCRIPT), "stop"], env={**os.environ, **env}, check=False)


def login(stack: SecuredStack, principal: str, password: str | None = None) -> dict[str, Any]:
    """aiokafka's connection arguments for `principal`: with its password unless one is given."""
    return {
        "bootstrap_servers": stack.bootstrap,
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": principal,
        "sasl_plain_password": stack.passwords[principal] if password is None else password,
        "request_timeout_ms": 10_000,
    }


@pytest.fixture(scope="module")
async def topics(stack: SecuredStack) -> list[str]:
    """Every topic of the table, created by the operator with one record each to consume."""
    admin = AIOKafkaAdminClient(**login(stack, OPERATOR))
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1) for topic in ALL_TOPICS])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(**login(stack, OPERATOR), acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for topic in ALL_TOPICS:
            await producer.send_and_wait(topic, b"written by the operator")
    finally:
        await producer.stop()
    return ALL_TOPICS


async def topics_written(connection: dict[str, Any], topics: list[str]) -> set[str]:
    """Which of `topics` a producer like the services' (idempotent, acks=all) may write to."""
    producer = AIOKafkaProducer(**connection, acks="all", enable_idempotence=True)
    await producer.start()
    written = set()
    try:
        for topic in topics:
            try:
                await asyncio.wait_for(producer.send_and_wait(topic, b"security test"), TIMEOUT_S)
            except TopicAuthorizationFailedError:
                continue
            written.add(topic)
    finally:
        await producer.stop()
    return written


async def consume_one(connection: dict[str, Any], topic: str, group: str) -> None:
    """Read one record of `topic` in `group` and commit its offset, as a service's consumer does."""
    consumer = AIOKafkaConsumer(
        topic, **connection, group_id=group, auto_offset_reset="earliest", enable_auto_commit=False
    )
    try:
        await consumer.start()
        await asyncio.wait_for(consumer.getone(), TIMEOUT_S)
        await consumer.commit()
    finally:
        await consumer.stop()


async def topics_read(connection: dict[str, Any], principal: str, topics: list[str]) -> set[str]:
    async def may_read(topic: str) -> bool:
        try:
            await consume_one(connection, topic, new_group(principal))
        except TopicAuthorizationFailedError:
            return False
        return True

    allowed = await asyncio.gather(*(may_read(topic) for topic in topics))
    return {topic for topic, ok in zip(topics, allowed, strict=True) if ok}


# ---------------------------------------------------------------- logins


async def test_a_client_without_credentials_can_neither_produce_nor_consume(
    stack: SecuredStack, topics: list[str]
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, request_timeout_ms=10_000)
    with pytest.raises(KafkaConnectionError):
        await producer.start()
    await producer.stop()

    consumer = AIOKafkaConsumer(
        "posting.created", bootstrap_servers=stack.bootstrap, group_id="postings.anonymous"
    )
    with pytest.raises(KafkaConnectionError):
        await consumer.start()
    await consumer.stop()


@pytest.mark.parametrize("principal", ["postings", OPERATOR, "nobody"])
async def test_a_wrong_password_is_refused(stack: SecuredStack, principal: str) -> None:
    producer = AIOKafkaProducer(**login(stack, principal, f"not-{stack.passwords[OPERATOR]}"))
    with pytest.raises(KafkaConnectionError):
        await producer.start()
    await producer.stop()


# ---------------------------------------------------------------- the services' ACLs


@pytest.mark.parametrize("service", SERVICES)
async def test_a_service_produces_only_to_the_topics_it_owns(
    stack: SecuredStack, topics: list[str], service: str
) -> None:
    assert await topics_written(login(stack, service), topics) == topics_granted(service, "Write")


@pytest.mark.parametrize("service", SERVICES)
async def test_a_service_consumes_only_the_topics_it_consumes(
    stack: SecuredStack, topics: list[str], service: str
) -> None:
    readable = await topics_read(login(stack, service), service, topics)

    assert readable == topics_granted(service, "Read")


@pytest.mark.parametrize("service", SERVICES)
async def test_a_service_cannot_use_another_services_consumer_group(
    stack: SecuredStack, topics: list[str], service: str
) -> None:
    topic = sorted(topics_granted(service, "Read"))[0]
    other = next(name for name in SERVICES if name != service)

    with pytest.raises(GroupAuthorizationFailedError):
        await consume_one(login(stack, service), topic, new_group(other))


# ---------------------------------------------------------------- the operator


async def test_the_operator_may_do_anything(stack: SecuredStack, topics: list[str]) -> None:
    connection = login(stack, OPERATOR)
    assert await topics_written(connection, topics) == set(topics)
    for topic in topics:
        await consume_one(connection, topic, f"any-group-{uuid.uuid4().hex[:8]}")

    admin = AIOKafkaAdminClient(**connection)
    await admin.start()
    try:
        name = f"operator-made-{uuid.uuid4().hex[:8]}"
        await admin.create_topics([NewTopic(name, 1, 1)])
        await admin.delete_topics([name])
    finally:
        await admin.close()


# ---------------------------------------------------------------- stack.sh


def test_kafka_client_prints_a_principals_client_properties(stack: SecuredStack) -> None:
    lines = stack.run("kafka-client", "notifications").splitlines()
    properties = parse_lines("\n".join(lines))

    assert len(lines) == 4
    assert properties == {
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "notifications",
        "sasl.password": stack.passwords["notifications"],
    }
    java = parse_lines(stack.run("kafka-client", "--java", "notifications"))
    assert java == {
        **properties,
        "sasl.jaas.config": "org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="notifications" password="{stack.passwords["notifications"]}";',
    }
    assert parse_lines(stack.run("kafka-client"))["sasl.username"] == OPERATOR


def test_status_prints_no_password(stack: SecuredStack) -> None:
    status = stack.run("status")

    assert not any(password in status for password in stack.passwords.values())


# ---------------------------------------------------------------- after a crash


async def test_users_and_acls_survive_a_kill_of_the_broker(
    stack: SecuredStack, topics: list[str]
) -> None:
    await asyncio.to_thread(kill_broker, stack)

    printed = parse_lines(await asyncio.to_thread(stack.run, "start"))

    assert printed["KAFKA_SASL_PASSWORD_POSTINGS"] == stack.passwords["postings"]
    assert await topics_written(
        login(stack, "postings"), ["posting.created", "application.submitted"]
    ) == {"posting.created"}


def kill_broker(stack: SecuredStack) -> None:
    """SIGKILL the broker and wait until it is gone (so `start` does not find it running)."""
    pid = int((Path(stack.env["STACK_DIR"]) / "kafka.pid").read_text().split()[0])
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        if Path(f"/proc/{pid}/cmdline").read_bytes() == b"":  # a zombie: dead, not yet reaped
            return
        time.sleep(0.1)
    raise AssertionError(f"the broker (pid {pid}) outlived SIGKILL")

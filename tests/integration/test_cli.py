"""The operator CLI on the real broker and database, run as an operator runs it: a process with
the services' connection settings and the `operator` principal's credentials (no JWT_SECRET).

Poison records are real: the applications service runs in this process with a bug in its read
model for one posting, and the notifications service gets an application that breaks the
schema. The CLI lists them with their reasons, shows one with the personal data masked, and,
once the bug is fixed, redrives the poisoned posting, which is then handled once; reading and
redriving leave the dead-letter topic's offsets and every group's committed offsets alone.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from pymongo import AsyncMongoClient

from hirestream.applications.domain import PostingView
from hirestream.applications.store import PostingReadModel
from hirestream.shared.events.envelope import serialize
from hirestream.shared.events.postings import POSTING_CREATED, PostingCreated
from hirestream.shared.messaging.outbox import OUTBOX_INDEX, new_outbox_fields, outbox_entry
from tests.conftest import unique_db
from tests.support.applications_integration import running_applications, wait_for_view
from tests.support.factories import new_posting_id, posting_created_event, snapshot_fields
from tests.support.kafka import keyed, produce, read_until
from tests.support.notifications import application_submitted, new_case, running_notifications
from tests.support.polling import eventually
from tests.support.servers import Servers, free_port

pytestmark = pytest.mark.integration

READ_MODEL_GROUP = "applications.postings-read-model"
DLQ = "posting.created.dlq"
SECRET = f"personal-{uuid.uuid4().hex[:8]}"  # in a poison value: no listing may repeat it
CONSOLE_SCRIPT = Path(sys.executable).with_name("hirestream")

# ------------------------------------------------------------------------------ the CLI


def cli_env(servers: Servers, principal: str = "operator", **settings: str) -> dict[str, str]:
    """The connection settings of the services, as `principal`; none of the process's own."""
    inherited = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("KAFKA_", "MONGODB_", "JWT_"))
    }
    return {
        **inherited,
        "KAFKA_BOOTSTRAP_SERVERS": servers.kafka_bootstrap,
        "MONGODB_URL": servers.mongodb_url,
        **servers.kafka_env(principal),
        **settings,
    }


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str

    def json_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.out.splitlines() if line.strip()]

    @property
    def error_line(self) -> str:
        """The one line of a failure (stderr holds nothing else)."""
        lines = self.err.strip().splitlines()
        assert len(lines) == 1, self.err
        return lines[0]


async def hirestream(env: dict[str, str], *args: str, timeout_s: float = 120) -> Ran:
    """The console script once installed, else the same module."""
    command = (
        [str(CONSOLE_SCRIPT)]
        if CONSOLE_SCRIPT.exists()
        else [sys.executable, "-m", "hirestream.shared.cli"]
    )
    process = await asyncio.create_subprocess_exec(
        *command,
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(timeout_s):
        out, err = await process.communicate()
    assert process.returncode is not None
    return Ran(process.returncode, out.decode(), err.decode())


# ------------------------------------------------------------------ what Kafka holds


async def end_offsets(servers: Servers, topic: str) -> dict[int, int]:
    admin = AIOKafkaAdminClient(**servers.kafka_client())
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    partitions = [TopicPartition(topic, p["partition"]) for p in described["partitions"]]
    consumer = AIOKafkaConsumer(**servers.kafka_client(), group_id=None)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
    return {tp.partition: offset for tp, offset in ends.items()}


async def committed_on(servers: Servers, topic: str) -> dict[str, dict[int, int]]:
    """Every consumer group's committed offsets on `topic`'s partitions."""
    admin = AIOKafkaAdminClient(**servers.kafka_client())
    await admin.start()
    try:
        groups = sorted({str(listed[0]) for listed in await admin.list_consumer_groups()})
        found: dict[str, dict[int, int]] = {}
        for group in groups:
            offsets = await admin.list_consumer_group_offsets(group)
            on_topic = {tp.partition: m.offset for tp, m in offsets.items() if tp.topic == topic}
            if on_topic:
                found[group] = on_topic
        return found
    finally:
        await admin.close()


async def caught_up(servers: Servers, group: str, topic: str) -> None:
    """Wait until `group` has committed every record of `topic` published so far."""

    async def done() -> bool:
        ends = await end_offsets(servers, topic)
        committed = (await committed_on(servers, topic)).get(group, {})
        return all(committed.get(p, 0) >= end for p, end in ends.items() if end > 0)

    await eventually(done, timeout_s=90, every_s=0.5)


async def ensure_topic(servers: Servers, topic: str, partitions: int = 3) -> None:
    admin = AIOKafkaAdminClient(**servers.kafka_client())
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    except TopicAlreadyExistsError:
        pass
    finally:
        await admin.close()


# --------------------------------------------------- poison, listed, then redriven once fixed


async def test_poison_is_listed_with_its_reason_and_redriven_once_the_bug_is_fixed(
    servers: Servers,
    base_env: dict[str, str],
    mongo: AsyncMongoClient[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    database = unique_db("applications")
    poisoned, garbage = new_posting_id(), new_posting_id()
    buggy = {poisoned}
    apply = PostingReadModel.apply

    async def apply_with_a_bug(self: PostingReadModel, view: PostingView) -> bool:
        if view.posting_id in buggy:
            raise RuntimeError("read model bug")
        return await apply(self, view)

    monkeypatch.setattr(PostingReadModel, "apply", apply_with_a_bug)
    env = cli_env(servers)
    async for _ in running_applications(base_env, database):
        await produce(
            servers.kafka_bootstrap,
            "posting.created",
            b"\xff{not json " + SECRET.encode(),
            key=garbage.encode(),
        )
        await produce(
            servers.kafka_bootstrap,
            "posting.created",
            posting_created_event(poisoned),
            key=poisoned.encode(),
        )
        await caught_up(servers, READ_MODEL_GROUP, "posting.created")
        dlq_ends = await end_offsets(servers, DLQ)
        dlq_committed = await committed_on(servers, DLQ)

        # Every dead-letter topic, one line per record with its key.
        listed = await hirestream(env, "dlq", "list", "--json")
        assert listed.code == 0, listed.err
        assert SECRET not in listed.out
        mine = {r["key"]: r for r in listed.json_lines() if r["key"] in {poisoned, garbage}}
        assert mine[poisoned]["topic"] == DLQ
        assert mine[poisoned]["reason"] == "handler"
        assert mine[poisoned]["group"] == READ_MODEL_GROUP
        assert mine[poisoned]["attempts"] == 1
        assert "RuntimeError: read model bug" in mine[poisoned]["error"]
        assert mine[poisoned]["original_topic"] == "posting.created"
        assert 0 <= mine[poisoned]["age_s"] < 600
        assert mine[garbage]["reason"] == "invalid"
        assert mine[garbage]["group"] == READ_MODEL_GROUP
        where = f"{DLQ}/{mine[poisoned]['partition']}/{mine[poisoned]['offset']}"

        human = await hirestream(
            env, "dlq", "list", "--topic", DLQ, "--reason", "handler", "--key", poisoned
        )
        assert human.code == 0, human.err
        header, *lines = human.out.splitlines()
        assert header.split() == [
            "TOPIC",
            "RECORD",
            "KEY",
            "REASON",
            "GROUP",
            "ATTEMPTS",
            "AGE",
            "ERROR",
        ]
        assert len(lines) == 1
        assert lines[0].split()[:6] == [
            DLQ,
            f"{mine[poisoned]['partition']}/{mine[poisoned]['offset']}",
            poisoned,
            "handler",
            READ_MODEL_GROUP,
            "1",
        ]
        invalid_only = await hirestream(env, "dlq", "list", "--topic", DLQ, "--reason", "invalid")
        assert garbage in invalid_only.out
        assert poisoned not in invalid_only.out

        created_ends = await end_offsets(servers, "posting.created")
        dry = await hirestream(
            env, "dlq", "redrive", "--topic", DLQ, "--key", poisoned, "--dry-run"
        )
        assert dry.code == 0, dry.err
        assert (
            dry.out.strip()
            == f"would send {where} -> posting.created key={poisoned} reason=handler"
        )
        assert await end_offsets(servers, "posting.created") == created_ends

        buggy.clear()  # the fix is deployed
        redriven = await hirestream(env, "dlq", "redrive", "--topic", DLQ, "--key", poisoned)
        assert redriven.code == 0, redriven.err
        (sent,) = redriven.out.splitlines()
        assert sent.startswith(f"sent {where} -> posting.created/")
        view = await wait_for_view(mongo, database, poisoned, 1)
        assert view["version"] == 1

        # Again, as an operator unsure it went: the version guard absorbs the copy.
        again = await hirestream(env, "dlq", "redrive", "--topic", DLQ, "--key", poisoned)
        assert again.code == 0, again.err
        await caught_up(servers, READ_MODEL_GROUP, "posting.created")
        views = mongo[database]["postings_view"]
        assert await views.count_documents({"_id": poisoned}) == 1
        stored = await views.find_one({"_id": poisoned})
        assert stored is not None
        assert stored["version"] == 1

        records = await read_until(
            servers.kafka_bootstrap,
            ["posting.created"],
            lambda rs: len(keyed(rs, poisoned)) >= 3,
        )
        original, *copies = keyed(records, poisoned)
        assert len(copies) == 2
        for copy in copies:
            assert copy.value == original.value
            assert copy.headers["redriven-from"] == where
            assert datetime.fromisoformat(copy.headers["redriven-at"]) > datetime.now(UTC) - (
                timedelta(minutes=5)
            )
            assert copy.headers["content-type"] == original.headers["content-type"]
            assert not [name for name in copy.headers if name.startswith("dlq-")]

        # Handled, not dead-lettered again; listing and redriving moved no offset.
        assert await end_offsets(servers, DLQ) == dlq_ends
        assert await committed_on(servers, DLQ) == dlq_committed


# --------------------------------------------------------------- personal data, masked


async def test_show_masks_the_personal_data_of_an_application_dead_letter(
    servers: Servers, base_env: dict[str, str]
) -> None:
    case = new_case()
    wire = json.loads(serialize(application_submitted(case)))
    wire["data"]["version"] = "first"  # breaks the schema: notifications dead-letters it
    env = cli_env(servers)
    async for _ in running_notifications(base_env, unique_db("notifications")):
        await produce(
            servers.kafka_bootstrap,
            "application.submitted",
            json.dumps(wire).encode(),
            key=case.application_id.encode(),
        )
        await read_until(
            servers.kafka_bootstrap,
            ["application.submitted.dlq"],
            lambda rs: bool(keyed(rs, case.application_id)),
            timeout_s=60,
        )
    listed = await hirestream(
        env,
        "dlq",
        "list",
        "--topic",
        "application.submitted.dlq",
        "--group",
        "notifications",
        "--key",
        case.application_id,
        "--json",
    )
    assert listed.code == 0, listed.err
    (dead,) = listed.json_lines()
    assert dead["reason"] == "invalid"
    assert "data.version" in dead["error"]
    position = [str(dead["partition"]), str(dead["offset"])]

    shown = await hirestream(env, "dlq", "show", "application.submitted.dlq", *position)
    assert shown.code == 0, shown.err
    personal = [case.name, case.email, f"cv.example.com/{case.candidate_id}", "six years"]
    for value in personal:
        assert value not in shown.out
    for kept in (case.candidate_id, case.application_id, case.org, "***"):
        assert kept in shown.out
    assert "  dlq-consumer-group: notifications" in shown.out
    assert "  dlq-original-topic: application.submitted" in shown.out
    assert "  content-type: application/cloudevents+json; charset=UTF-8" in shown.out

    as_json = await hirestream(env, "dlq", "show", "application.submitted.dlq", *position, "--json")
    (record,) = as_json.json_lines()
    assert record["value"]["data"]["candidate"] == {
        "candidate_id": case.candidate_id,
        "name": "***",
        "email": "***",
    }
    assert record["headers"]["dlq-consumer-group"] == "notifications"

    unmasked = await hirestream(
        env, "dlq", "show", "application.submitted.dlq", *position, "--unmasked"
    )
    assert case.email in unmasked.out
    assert "personal data included" in unmasked.err


# ------------------------------------------------------------------------- one-line errors


async def test_a_wrong_topic_is_one_line_naming_the_dead_letter_topics(servers: Servers) -> None:
    await ensure_topic(servers, DLQ)
    env = cli_env(servers)
    for args in (
        ["dlq", "list", "--topic", "no-such-topic.dlq"],
        ["dlq", "show", "no-such-topic.dlq", "0", "0"],
        ["dlq", "redrive", "--topic", "no-such-topic.dlq", "--all"],
    ):
        ran = await hirestream(env, *args)
        assert ran.code == 2
        assert ran.error_line.startswith("error: no topic no-such-topic.dlq")
        assert DLQ in ran.error_line  # among the known dead-letter topics
        assert ran.out == ""
    not_dlq = await hirestream(env, "dlq", "show", "posting.created", "0", "0")
    assert not_dlq.code == 2
    assert "posting.created is not a dead-letter topic" in not_dlq.error_line
    nowhere = await hirestream(env, "dlq", "show", DLQ, "0", "999999999")
    assert nowhere.code == 2
    assert nowhere.error_line == f"error: no record at {DLQ}/0/999999999"
    # Naming a topic never creates it (the local broker creates topics it is asked about).
    assert "no-such-topic.dlq" not in await topics(servers)


async def topics(servers: Servers) -> list[str]:
    admin = AIOKafkaAdminClient(**servers.kafka_client())
    await admin.start()
    try:
        return list(await admin.list_topics())
    finally:
        await admin.close()


async def test_an_unreachable_broker_is_one_line_within_the_timeout(servers: Servers) -> None:
    env = cli_env(servers, KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}")
    started = asyncio.get_running_loop().time()
    ran = await hirestream(env, "--timeout", "5", "dlq", "list")
    assert asyncio.get_running_loop().time() - started < 30
    assert ran.code == 1
    assert ran.error_line.startswith("error: cannot reach Kafka at 127.0.0.1:")
    assert "KAFKA_BOOTSTRAP_SERVERS" in ran.error_line
    database = await hirestream(
        cli_env(servers, MONGODB_URL=f"mongodb://127.0.0.1:{free_port()}"),
        "outbox",
        "status",
        "--timeout",
        "2",
    )
    assert database.code == 1
    assert database.error_line.startswith("error: cannot reach MongoDB at 127.0.0.1:")


async def test_sasl_without_a_password_is_refused_before_connecting(servers: Servers) -> None:
    env = cli_env(
        servers,
        KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT",
        KAFKA_SASL_MECHANISM="SCRAM-SHA-512",
        KAFKA_SASL_USERNAME="operator",
    )
    env.pop("KAFKA_SASL_PASSWORD", None)
    ran = await hirestream(env, "lag")
    assert ran.code == 2
    assert ran.error_line == (
        "error: KAFKA_SASL_PASSWORD is not set: KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT needs "
        "the password of KAFKA_SASL_USERNAME (operator)"
    )


async def test_missing_or_wrong_credentials_and_refusals_name_the_principal(
    servers: Servers,
) -> None:
    if not servers.kafka_passwords:
        pytest.fail("the test stack's Kafka must run with authentication (KAFKA_AUTH=scram)")
    await ensure_topic(servers, DLQ)
    anonymous = {
        k: v for k, v in cli_env(servers).items() if not k.startswith(("KAFKA_SASL", "KAFKA_SEC"))
    }
    missing = await hirestream(anonymous, "dlq", "list")
    assert missing.code == 1
    assert "closed the connection: it probably requires authentication" in missing.error_line

    wrong = await hirestream(cli_env(servers, KAFKA_SASL_PASSWORD="not-the-password"), "lag")
    assert wrong.code == 1
    assert "refused the credentials of principal 'operator'" in wrong.error_line

    # applications may write dead letters of posting.created, not read them.
    refused = await hirestream(cli_env(servers, "applications"), "dlq", "list", "--topic", DLQ)
    assert refused.code == 1
    assert refused.error_line == (
        f"error: Kafka refused principal 'applications' access to topic {DLQ} (no ACL grants it)"
    )


# ------------------------------------------------------------------------- lag and outbox


async def test_lag_per_group_and_partition(servers: Servers) -> None:
    topic = group = f"test-cli-lag-{uuid.uuid4().hex[:8]}"
    await ensure_topic(servers, topic, partitions=2)
    producer = AIOKafkaProducer(**servers.kafka_client(), acks="all")
    await producer.start()
    try:
        for partition, count in ((0, 5), (1, 2)):
            for n in range(count):
                await producer.send_and_wait(topic, f"{n}".encode(), partition=partition)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(**servers.kafka_client(), group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, 0)])
        await consumer.commit({TopicPartition(topic, 0): 3})
    finally:
        await consumer.stop()

    env = cli_env(servers)
    ran = await hirestream(env, "lag", "--group", group, "--json")
    assert ran.code == 0, ran.err
    assert ran.json_lines() == [
        {"group": group, "topic": topic, "partition": 0, "committed": 3, "end": 5, "lag": 2},
        {"group": group, "topic": topic, "partition": 1, "committed": None, "end": 2, "lag": 2},
    ]
    human = await hirestream(env, "lag", "--group", group)
    assert human.out.splitlines()[0].split() == [
        "GROUP",
        "TOPIC",
        "PARTITION",
        "COMMITTED",
        "END",
        "LAG",
    ]
    assert [group, "4"] in [line.split() for line in human.out.splitlines()]
    unknown = await hirestream(env, "lag", "--group", f"{group}-nobody")
    assert unknown.code == 2
    assert unknown.error_line.startswith(f"error: no consumer group {group}-nobody")


async def test_outbox_status_counts_pending_events_and_the_oldest_age(
    servers: Servers, mongo: AsyncMongoClient[dict[str, Any]]
) -> None:
    database = unique_db("cli")
    now = datetime.now(UTC)

    def entries(*ages_s: float) -> list[dict[str, Any]]:
        made = []
        for age_s in ages_s:
            data = PostingCreated.model_validate(snapshot_fields(new_posting_id(), 1))
            entry = outbox_entry(POSTING_CREATED.new(data, source="hirestream/postings"))
            made.append({**entry, "at": now - timedelta(seconds=age_s)})
        return made

    def document(*ages_s: float, due_in_s: float | None) -> dict[str, Any]:
        fields = new_outbox_fields(entries(*ages_s))
        fields["outbox_due_at"] = None if due_in_s is None else now + timedelta(seconds=due_in_s)
        return {"_id": uuid.uuid4().hex, **fields}

    outboxed = mongo[database]["postings"]
    await outboxed.create_index(OUTBOX_INDEX, name="outbox_due")
    await outboxed.insert_many(
        [
            document(600, 540, due_in_s=-300),  # a crash left it: overdue
            document(60, due_in_s=3600),  # pending, its relay not late yet
            document(due_in_s=None),  # published
            document(due_in_s=-5),  # published, its due time not cleared yet
        ]
    )
    await mongo[database]["plain"].insert_one({"_id": "no outbox here"})

    env = cli_env(servers, MONGODB_DATABASE=database)
    ran = await hirestream(env, "outbox", "status", "--json")
    assert ran.code == 0, ran.err
    (row,) = ran.json_lines()
    assert {k: row[k] for k in row if k not in {"oldest_pending_at", "oldest_pending_age_s"}} == {
        "database": database,
        "collection": "postings",
        "pending_documents": 2,
        "pending_events": 3,
        "overdue_documents": 1,
    }
    assert 600 <= row["oldest_pending_age_s"] < 700
    human = await hirestream(env, "outbox", "status")
    header, line = human.out.splitlines()
    assert header.split() == [
        "DATABASE",
        "COLLECTION",
        "PENDING_DOCS",
        "PENDING_EVENTS",
        "OVERDUE_DOCS",
        "OLDEST_PENDING",
    ]
    assert line.split()[:5] == [database, "postings", "2", "3", "1"]
    assert line.split()[5].startswith("10m")
    both = await hirestream(env, "outbox", "status", "--service", "postings")
    assert both.code == 2
    assert "MONGODB_DATABASE" in both.error_line

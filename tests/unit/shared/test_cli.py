"""The operator CLI's parts that need no server: reasons, selection, masking, redriven headers,
arguments, settings and its one-line errors (the commands on real servers:
tests/integration/test_cli.py)."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from faststream.kafka import KafkaBroker, TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage
from pymongo.errors import ServerSelectionTimeoutError

from hirestream.applications.app import ApplicationsSettings
from hirestream.notifications.app import NotificationsSettings
from hirestream.postings.app import PostingsSettings
from hirestream.shared.cli.dead_letters import (
    MASK,
    DeadLetter,
    Selection,
    masked,
    reason_of,
    redrive_command,
    redriven_headers,
)
from hirestream.shared.cli.errors import USAGE, CliError
from hirestream.shared.cli.kafka import client_options, require_credentials
from hirestream.shared.cli.main import main, parser
from hirestream.shared.cli.outbox_status import SERVICES, databases
from hirestream.shared.cli.output import age, instant, parse_duration, table
from hirestream.shared.cli.reading import Progress
from hirestream.shared.events.envelope import CloudEvent
from hirestream.shared.events.postings import POSTING_CREATED, PostingCreated
from hirestream.shared.messaging.broker import install_dead_letters
from hirestream.shared.messaging.dead_letters import HandlerRetries
from hirestream.shared.messaging.subscriptions import Subscription, subscribe
from hirestream.shared.settings import ConnectionSettings, ServiceSettings
from tests.support.factories import posting_created_event

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
CONNECTION_VARIABLES = [
    "KAFKA_BOOTSTRAP_SERVERS",
    "KAFKA_SECURITY_PROTOCOL",
    "KAFKA_SASL_MECHANISM",
    "KAFKA_SASL_USERNAME",
    "KAFKA_SASL_PASSWORD",
    "MONGODB_URL",
    "MONGODB_DATABASE",
    "JWT_SECRET",
    "JWT_JWKS_URL",
]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in CONNECTION_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def dead_letter(
    *,
    key: bytes | None = b"p1",
    error: str | None = "handler failed: RuntimeError: bug",
    group: str = "applications.postings-read-model",
    failed_at: datetime = NOW,
    headers: list[tuple[str, bytes]] | None = None,
    partition: int = 0,
    offset: int = 7,
) -> DeadLetter:
    dlq = [
        ("dlq-original-topic", b"posting.created"),
        ("dlq-original-partition", b"2"),
        ("dlq-original-offset", b"41"),
        ("dlq-consumer-group", group.encode()),
        ("dlq-attempts", b"1"),
        ("dlq-failed-at", failed_at.isoformat().encode()),
    ]
    if error is not None:
        dlq.append(("dlq-error", error.encode()))
    original = [("content-type", b"application/cloudevents+json; charset=UTF-8")]
    return DeadLetter(
        topic="posting.created.dlq",
        partition=partition,
        offset=offset,
        key=key,
        value=b"{}",
        headers=tuple((headers if headers is not None else original) + dlq),
        timestamp_ms=int(NOW.timestamp() * 1000),
    )


# ----------------------------------------------------------- reasons, as the middleware writes


async def dlq_error_of(handler: Any, value: bytes) -> str:
    """The `dlq-error` the dead-letter middleware writes when `handler` gets `value`."""
    broker = KafkaBroker()
    install_dead_letters(broker, HandlerRetries(attempts=2, initial_backoff_s=0.01))
    errors: list[str] = []

    @broker.subscriber("posting.created.dlq", group_id="dlq-reader")
    async def on_dead(message: KafkaMessage) -> None:
        errors.append(message.headers["dlq-error"])

    subscribe(broker, Subscription(POSTING_CREATED, "g", handler))
    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish(value, "posting.created", key=b"k")
    (error,) = errors
    return error


async def test_the_reason_is_read_back_from_what_the_middleware_writes() -> None:
    async def bug(event: CloudEvent[PostingCreated]) -> None:
        raise KeyError("a bug")

    async def database_away(event: CloudEvent[PostingCreated]) -> None:
        raise ServerSelectionTimeoutError("database down")

    async def fine(event: CloudEvent[PostingCreated]) -> None:
        return None

    assert reason_of(await dlq_error_of(bug, posting_created_event("p1"))) == "handler"
    assert reason_of(await dlq_error_of(database_away, posting_created_event("p2"))) == (
        "transient"
    )
    assert reason_of(await dlq_error_of(fine, b"\x00not json")) == "invalid"
    assert reason_of(None) == "unknown"


# ---------------------------------------------------------------------------- selection


def selection(**changes: Any) -> Selection:
    return Selection(**{"everything": True, **changes})


def test_filters_narrow_what_is_chosen() -> None:
    handler = dead_letter()
    invalid = dead_letter(key=b"p2", error="invalid event: data.version: Input should be int")
    transient = dead_letter(
        key=b"p3",
        error="transient failure after 9 attempts: ServerSelectionTimeoutError: x",
        group="notifications",
        failed_at=NOW - timedelta(days=3),
    )
    everything = [handler, invalid, transient]

    def taken(chosen: Selection) -> list[str | None]:
        return [d.key_text for d in everything if chosen.takes(d)]

    assert taken(selection()) == ["p1", "p2", "p3"]
    assert taken(selection(reasons=("handler",))) == ["p1"]
    assert taken(selection(reasons=("invalid", "transient"))) == ["p2", "p3"]
    assert taken(selection(reasons=("data.VERSION",))) == ["p2"]  # words of dlq-error
    assert taken(selection(groups=frozenset({"notifications"}))) == ["p3"]
    assert taken(selection(since=NOW - timedelta(hours=1))) == ["p1", "p2"]
    assert taken(selection(older_than=NOW - timedelta(hours=1))) == ["p3"]
    assert taken(Selection(keys=frozenset({"p2"}))) == ["p2"]
    assert taken(Selection(offsets=frozenset({(0, 7)}), reasons=("transient",))) == ["p3"]


def test_failed_at_falls_back_to_the_record_time() -> None:
    dead = DeadLetter("t.dlq", 0, 0, None, None, (), int(NOW.timestamp() * 1000))
    assert dead.failed_at == NOW
    assert dead.reason == "unknown"
    assert dead.age_s(NOW + timedelta(minutes=2)) == 120


# ------------------------------------------------------------------------------ masking


def test_personal_data_is_masked_and_ids_kept() -> None:
    event = {
        "id": "e1",
        "type": "application.submitted",
        "subject": "a1",
        "data": {
            "application_id": "a1",
            "candidate": {"candidate_id": "c1", "name": "Ada Lovelace", "email": "ada@x.io"},
            "resume_url": "https://cv.example.com/ada.pdf",
            "cover_letter": "Dear team",
            "skills": ["python"],
            "contact_email": "talent@acme.example",
            "notes": [{"name": "Ada", "score": 1}],
        },
    }
    shown = masked(event)
    assert shown["data"]["candidate"] == {"candidate_id": "c1", "name": MASK, "email": MASK}
    assert shown["data"]["resume_url"] == MASK
    assert shown["data"]["cover_letter"] == MASK
    assert shown["data"]["contact_email"] == MASK
    assert shown["data"]["notes"] == [{"name": MASK, "score": 1}]
    assert shown["data"]["skills"] == ["python"]
    assert (shown["id"], shown["subject"], shown["data"]["application_id"]) == ("e1", "a1", "a1")
    text = json.dumps(shown)
    for personal in ("Ada", "ada@x.io", "cv.example.com", "Dear team", "talent@"):
        assert personal not in text


def test_a_candidate_of_the_wrong_shape_is_masked_whole() -> None:
    assert masked({"data": {"candidate": "Ada Lovelace <ada@x.io>"}}) == {
        "data": {"candidate": MASK}
    }


# ----------------------------------------------------------------------- redriven headers


def test_redriven_headers_keep_the_originals_and_say_where_from() -> None:
    dead = dead_letter(
        headers=[
            ("content-type", b"application/cloudevents+json; charset=UTF-8"),
            ("correlation-id", b"req-1"),
            ("redriven-from", b"posting.created.dlq/1/1"),  # an earlier redrive
        ]
    )
    headers = redriven_headers(dead, NOW)
    names = [name for name, _ in headers]
    assert not [name for name in names if name.startswith("dlq-")]
    assert names == ["content-type", "correlation-id", "redriven-from", "redriven-at"]
    assert dict(headers)["redriven-from"] == b"posting.created.dlq/0/7"
    assert dict(headers)["redriven-at"] == b"2026-11-23T10:00:00.000+00:00"


# ---------------------------------------------------------------------- arguments, output


def test_durations_and_times() -> None:
    assert parse_duration("1h30m") == timedelta(minutes=90)
    assert parse_duration("7d") == timedelta(days=7)
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("7 days")
    assert instant("2h", now=NOW) == NOW - timedelta(hours=2)
    assert instant("2026-11-23T08:00:00Z") == NOW - timedelta(hours=2)
    assert instant("2026-11-23T08:00:00") == NOW - timedelta(hours=2)  # UTC unless said
    with pytest.raises(argparse.ArgumentTypeError):
        instant("yesterday")
    assert [age(s) for s in (5, 125, 3 * 3600 + 300, 2 * 86400 + 4 * 3600, None)] == [
        "5s",
        "2m05s",
        "3h05m",
        "2d04h",
        "-",
    ]


def test_a_table_aligns_its_columns() -> None:
    assert table(["A", "BB"], [["xyz", 1], ["x", 22]]) == ["A    BB", "xyz  1", "x    22"]


def test_arguments() -> None:
    args = parser().parse_args(
        ["dlq", "redrive", "--topic", "t.dlq", "--offset", "1:42", "--rate", "50", "--timeout", "3"]
    )
    assert (args.offset, args.rate, args.timeout) == ([(1, 42)], 50.0, 3.0)
    assert parser().parse_args(["--timeout", "4", "lag"]).timeout == 4.0
    assert parser().parse_args(["lag"]).timeout == 15.0
    for wrong in (["--offset", "1"], ["--offset", "a:b"], ["--rate", "0"], ["--rate", "5000"]):
        with pytest.raises(SystemExit) as stopped:
            parser().parse_args(["dlq", "redrive", "--topic", "t.dlq", *wrong])
        assert stopped.value.code == USAGE


async def test_a_redrive_must_say_which_records() -> None:
    args = parser().parse_args(["dlq", "redrive", "--topic", "t.dlq"])
    with pytest.raises(CliError, match="--key KEY, --offset PARTITION:OFFSET or --all") as error:
        await redrive_command(None, args)  # type: ignore[arg-type]  # refused before any I/O
    assert error.value.exit_code == USAGE
    args = parser().parse_args(["dlq", "redrive", "--topic", "t.dlq", "--all", "--key", "k"])
    with pytest.raises(CliError, match="--all"):
        await redrive_command(None, args)  # type: ignore[arg-type]


def test_progress_speaks_only_on_long_runs(capsys: pytest.CaptureFixture[str]) -> None:
    quick = Progress("reading t.dlq", 10, stream=sys.stderr)
    quick.advance(10)
    quick.finish()
    assert capsys.readouterr().err == ""
    slow = Progress("reading t.dlq", 10, every_s=0.0, stream=sys.stderr)
    slow.advance(4)
    slow.finish()
    assert capsys.readouterr().err.splitlines() == [
        "reading t.dlq: 4 of 10 records",
        "reading t.dlq: 4 of 10 records",
    ]


# ------------------------------------------------------------------------------ settings


def test_the_connection_settings_need_no_jwt_secret(clean_env: pytest.MonkeyPatch) -> None:
    settings = ConnectionSettings()
    assert settings.kafka_bootstrap_servers == "127.0.0.1:9092"
    assert issubclass(ServiceSettings, ConnectionSettings)
    assert set(ConnectionSettings.model_fields) < set(ServiceSettings.model_fields)
    for name, field in ConnectionSettings.model_fields.items():
        assert ServiceSettings.model_fields[name].default == field.default


def test_sasl_settings_without_a_password_are_one_clear_error(
    clean_env: pytest.MonkeyPatch,
) -> None:
    clean_env.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    clean_env.setenv("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    clean_env.setenv("KAFKA_SASL_USERNAME", "operator")
    settings = ConnectionSettings()
    with pytest.raises(CliError, match="KAFKA_SASL_PASSWORD is not set") as error:
        require_credentials(settings)
    assert error.value.exit_code == USAGE
    clean_env.setenv("KAFKA_SASL_PASSWORD", "pw")
    options = client_options(ConnectionSettings(), timeout_s=5)
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "operator"
    assert options["security_protocol"] == "SASL_SSL"
    assert "ssl_context" in options


def test_malformed_settings_stop_the_cli_with_one_line(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clean_env.setenv("KAFKA_SECURITY_PROTOCOL", "KERBEROS")
    with pytest.raises(SystemExit) as stopped:
        main(["lag"])
    assert stopped.value.code == USAGE
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert "KAFKA_SECURITY_PROTOCOL" in err


def test_outbox_databases(clean_env: pytest.MonkeyPatch) -> None:
    defaults = {
        str(cls.model_fields["mongodb_database"].default)
        for cls in (PostingsSettings, ApplicationsSettings, NotificationsSettings)
    }
    assert set(SERVICES) == defaults
    assert databases(ConnectionSettings(), None) == list(SERVICES)
    assert databases(ConnectionSettings(), ["notifications"]) == ["notifications"]
    clean_env.setenv("MONGODB_DATABASE", "applications_eu")
    assert databases(ConnectionSettings(), None) == ["applications_eu"]
    with pytest.raises(CliError, match="MONGODB_DATABASE"):
        databases(ConnectionSettings(), ["postings"])


def test_the_rebuild_says_in_one_line_where_the_applications_package_is_missing(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # As in the postings and notifications images: the package cannot be imported.
    clean_env.setitem(sys.modules, "hirestream.applications", None)
    clean_env.delitem(sys.modules, "hirestream.applications.rebuild_read_model", raising=False)
    assert main(["read-model", "rebuild"]) == USAGE
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: read-model rebuild needs the applications service's package")
    assert "\n" not in err

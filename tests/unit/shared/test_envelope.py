"""The CloudEvents envelope: what producers write and what consumers accept."""

import json
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from hirestream.shared.events.envelope import CONTENT_TYPE, InvalidEvent, serialize
from hirestream.shared.events.postings import (
    POSTING_CLOSED,
    POSTING_CREATED,
    CloseReason,
    PostingClosed,
)


def closed_payload(version: int = 2) -> PostingClosed:
    return PostingClosed(
        posting_id="6650f1c2e4b0a1b2c3d4e5f6",
        org="acme",
        reason=CloseReason.FILLED,
        version=version,
        closed_at=datetime(2026, 11, 23, 10, 15, 30, 123456, tzinfo=UTC),
    )


def test_new_event_fills_the_contract_attributes() -> None:
    event = POSTING_CLOSED.new(closed_payload(), source="hirestream/postings", correlation_id="r1")
    wire = json.loads(serialize(event))
    assert wire["specversion"] == "1.0"
    assert wire["type"] == "posting.closed"
    assert wire["source"] == "hirestream/postings"
    assert wire["subject"] == "6650f1c2e4b0a1b2c3d4e5f6"  # the aggregate id, also the record key
    assert wire["datacontenttype"] == "application/json"
    assert wire["dataschema"] == "https://hirestream.dev/schemas/posting.closed/1.json"
    assert wire["correlationid"] == "r1"
    assert wire["time"].endswith("Z")
    assert wire["data"]["closed_at"] == "2026-11-23T10:15:30.123Z"  # RFC 3339, UTC, ms
    assert CONTENT_TYPE.startswith("application/cloudevents+json")


def test_every_new_event_has_its_own_id() -> None:
    ids = {POSTING_CLOSED.new(closed_payload(), source="s").id for _ in range(100)}
    assert len(ids) == 100


def test_round_trip_keeps_the_event() -> None:
    event = POSTING_CLOSED.new(closed_payload(), source="hirestream/postings")
    parsed = POSTING_CLOSED.parse(serialize(event))
    assert parsed == event


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    wire = json.loads(serialize(POSTING_CLOSED.new(closed_payload(), source="s")))
    wire["newextension"] = "x"
    wire["data"]["added_later"] = {"nested": True}
    parsed = POSTING_CLOSED.parse(json.dumps(wire))
    assert parsed.data.reason is CloseReason.FILLED


def test_a_naive_time_is_refused() -> None:
    wire = json.loads(serialize(POSTING_CLOSED.new(closed_payload(), source="s")))
    wire["time"] = "2026-11-23T10:15:30"
    with pytest.raises(InvalidEvent, match="time"):
        POSTING_CLOSED.parse(json.dumps(wire))


def test_an_event_of_another_type_is_refused() -> None:
    event = POSTING_CLOSED.new(closed_payload(), source="s")
    wire = json.loads(serialize(event))
    wire["type"] = "posting.created"
    with pytest.raises(InvalidEvent, match=r"invalid event: event type 'posting\.created'"):
        POSTING_CLOSED.parse(json.dumps(wire))


@pytest.mark.parametrize(
    "value",
    [b"not json", b"{}", b"[]", b'{"specversion": "1.0"}', "\u00ff".encode("latin-1")],
)
def test_poison_values_are_refused_without_echoing_them(value: bytes) -> None:
    with pytest.raises(InvalidEvent) as refused:
        POSTING_CREATED.parse(value)
    assert "not json" not in str(refused.value)


def test_version_must_be_positive() -> None:
    with pytest.raises(ValidationError):
        closed_payload(version=0)

"""Fault test: poison records on every consumed topic.

The three services run as processes. An independent aiokafka producer writes to every consumed
topic a value that is not JSON, JSON of the wrong shape, a valid envelope of another event type
and a ~900 KB value, each followed by a valid event on the same key (so on the same partition).
Each poison record must be dead-lettered once per consumer group, and each valid event after it
handled.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from pymongo import AsyncMongoClient

from hirestream.shared.events.applications import (
    APPLICATION_STATUS_CHANGED,
    APPLICATION_SUBMITTED,
    ApplicationStatus,
    ApplicationStatusChanged,
    ApplicationSubmitted,
    Candidate,
    Match,
)
from hirestream.shared.events.envelope import CONTENT_TYPE, serialize, source_of
from hirestream.shared.events.types import utc_now
from tests.fault.conftest import FaultReport
from tests.support.factories import (
    new_posting_id,
    posting_closed_event,
    posting_created_event,
    posting_updated_event,
)
from tests.support.faults import (
    ORG,
    RUN,
    SUBMITTED,
    Document,
    Stores,
    ids_in,
    in_app_notifications,
    read_to_end,
)
from tests.support.kafka import POISON_HEADER, Record
from tests.support.polling import eventually
from tests.support.servers import Servers, kafka_client
from tests.support.system import running_system

pytestmark = pytest.mark.e2e

READ_MODEL_GROUP = "applications.postings-read-model"
NOTIFICATIONS_GROUP = "notifications"

CONSUMER_GROUPS = {
    "posting.created": (READ_MODEL_GROUP, NOTIFICATIONS_GROUP),
    "posting.updated": (READ_MODEL_GROUP,),
    "posting.closed": (READ_MODEL_GROUP,),
    "application.submitted": (NOTIFICATIONS_GROUP,),
    "application.status_changed": (NOTIFICATIONS_GROUP,),
}
POISON_KINDS = ("not_json", "wrong_schema", "wrong_type", "oversized")
OVERSIZED_BYTES = 900 * 1024  # under the broker's default limit of 1 MB per record
SECRET = f"personal-{RUN}"  # in every poison value: a dead letter's reason must not repeat it
# The version each valid posting event carries; a misapplied poison (version 9) would win.
POSTING_VERSIONS = {"posting.created": 1, "posting.updated": 2, "posting.closed": 3}


def application_submitted(application_id: str, candidate_id: str, **changes: Any) -> bytes:
    data = ApplicationSubmitted.model_validate(
        {
            "application_id": application_id,
            "posting_id": new_posting_id(),
            "org": ORG,
            "candidate": Candidate(
                candidate_id=candidate_id, name="Poison Test", email=f"{candidate_id}@example.com"
            ),
            "resume_url": f"https://cv.example.com/{candidate_id}.pdf",
            "skills": ["python"],
            "match": Match(score=1.0, matched_skills=["python"], missing_skills=[]),
            "consent": {"processing": True, "given_at": utc_now()},
            "status": ApplicationStatus.SUBMITTED,
            "version": 1,
            "submitted_at": utc_now(),
            **changes,
        }
    )
    return serialize(APPLICATION_SUBMITTED.new(data, source=source_of("applications")))


def application_status_changed(application_id: str, candidate_id: str, version: int) -> bytes:
    data = ApplicationStatusChanged(
        application_id=application_id,
        posting_id=new_posting_id(),
        org=ORG,
        candidate_id=candidate_id,
        from_status=ApplicationStatus.SUBMITTED,
        to_status=ApplicationStatus.SCREENING,
        reason=SECRET,
        changed_by=f"emp-{RUN}",
        version=version,
        changed_at=utc_now(),
    )
    return serialize(APPLICATION_STATUS_CHANGED.new(data, source=source_of("applications")))


def valid_event(topic: str, key: str) -> bytes:
    """A valid event of `topic` about `key`: a posting id, or an application id (whose
    candidate id is `c-<key>`)."""
    if topic == "posting.created":
        return posting_created_event(key, org=ORG)
    if topic == "posting.updated":
        return posting_updated_event(key, POSTING_VERSIONS[topic], org=ORG)
    if topic == "posting.closed":
        return posting_closed_event(key, POSTING_VERSIONS[topic])
    if topic == APPLICATION_SUBMITTED.name:
        return application_submitted(key, f"c-{key}")
    return application_status_changed(key, f"c-{key}", version=2)


def poison(kind: str, topic: str, key: str) -> bytes:
    if kind == "not_json":
        return b"\xff\xfe{not json " + SECRET.encode()
    if kind == "wrong_schema":
        return json.dumps({"order_id": key, "note": SECRET, "lines": [1, 2, 3]}).encode()
    if kind == "wrong_type":  # a valid envelope of another event type, with a newer version
        return {
            "posting.created": lambda: posting_updated_event(key, 9, description=SECRET * 2),
            "posting.updated": lambda: posting_closed_event(key, 9),
            "posting.closed": lambda: posting_updated_event(key, 9, description=SECRET * 2),
            "application.submitted": lambda: application_status_changed(key, f"c-{key}", 9),
            "application.status_changed": lambda: application_submitted(
                key, f"c-{key}", cover_letter=SECRET
            ),
        }[topic]()
    envelope = {  # oversized: the right type and envelope, a ~900 KB payload of the wrong shape
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "tests/poison",
        "type": topic,
        "subject": key,
        "time": utc_now().isoformat(),
        "dataschema": f"https://hirestream.dev/schemas/{topic}/1.json",
        "data": {"padding": SECRET + "x" * OVERSIZED_BYTES},
    }
    return json.dumps(envelope).encode()


@dataclass(frozen=True)
class Sent:
    topic: str
    kind: str  # a poison kind, or "valid"
    key: str
    value: bytes
    partition: int
    offset: int


async def produce_poison_then_valid(bootstrap: str) -> list[Sent]:
    """On every consumed topic, each kind of poison, each followed by a valid event on the same
    key; sent one at a time, so each pair is in this order on one partition."""
    posting_keys = {
        (topic, kind): new_posting_id() for topic in POSTING_VERSIONS for kind in POISON_KINDS
    }
    application_keys = {kind: uuid.uuid4().hex[:24] for kind in POISON_KINDS}
    producer = AIOKafkaProducer(**kafka_client(bootstrap), acks="all", enable_idempotence=True)
    await producer.start()
    sent: list[Sent] = []
    try:
        for topic in CONSUMER_GROUPS:
            for kind in POISON_KINDS:
                key = posting_keys.get((topic, kind)) or application_keys[kind]
                for label, value in [
                    (kind, poison(kind, topic, key)),
                    ("valid", valid_event(topic, key)),
                ]:
                    headers = [("content-type", CONTENT_TYPE.encode())]
                    if label != "valid":
                        headers.append((POISON_HEADER, label.encode()))
                    meta = await producer.send_and_wait(
                        topic, value, key=key.encode(), headers=headers
                    )
                    sent.append(Sent(topic, label, key, value, meta.partition, meta.offset))
    finally:
        await producer.stop()
    return sent


async def missing_handling(sent: list[Sent], stores: Stores) -> list[str]:
    """The effects of the valid events that have not appeared (yet), and any that were
    overridden by a poison record."""
    valid = [s for s in sent if s.kind == "valid"]
    postings = [s for s in valid if s.topic.startswith("posting.")]
    views = {
        doc["_id"]: doc
        async for doc in stores.postings_view.find(
            {"_id": {"$in": [s.key for s in postings]}}, {"version": 1, "status": 1}
        )
    }
    announced = await ids_in(
        stores.announced_postings, [s.key for s in postings if s.topic == "posting.created"]
    )
    applications = sorted({s.key for s in valid if s.topic.startswith("application.")})
    told = await in_app_notifications(stores, list(CONSUMER_GROUPS), applications)
    missing = []
    for s in postings:
        view = views.get(s.key, {})
        if view.get("version") != POSTING_VERSIONS[s.topic]:
            missing.append(f"read model of {s.topic} {s.key}: {view}")
        if s.topic == "posting.closed" and view.get("status") != "closed":
            missing.append(f"read model of {s.topic} {s.key}: {view}")
        if s.topic == "posting.created" and s.key not in announced:
            missing.append(f"notifications facts of {s.key}")
    for application_id in applications:
        expected = [
            (SUBMITTED, f"user:c-{application_id}"),
            (SUBMITTED, f"org:{ORG}"),
            (APPLICATION_STATUS_CHANGED.name, f"user:c-{application_id}"),
        ]
        for kind, recipient in expected:
            if told[(kind, application_id, recipient)] != 1:
                missing.append(
                    f"{told[(kind, application_id, recipient)]} x {kind} for {recipient}"
                )
    return missing


def dead_letter_origin(headers: dict[str, str]) -> tuple[str, str, str, str]:
    """Where a dead letter came from, by its headers: topic, partition, offset, group."""
    names = ("dlq-original-topic", "dlq-original-partition", "dlq-original-offset")
    topic, partition, offset = (headers.get(name, "?") for name in names)
    return topic, partition, offset, headers.get("dlq-consumer-group", "?")


def check_dead_letters(sent: list[Sent], records: list[Record]) -> tuple[list[str], list[str]]:
    """Each poison record exactly once per consumer group in `<topic>.dlq`, as it was sent,
    with headers naming its origin, the group and a reason that does not echo the value.

    Returns what is missing or wrong, and what is there twice (or should not be there)."""
    ours = {s.key.encode() for s in sent}
    letters: defaultdict[tuple[str, str, str, str], list[Record]] = defaultdict(list)
    for record in records:
        if record.key in ours:
            letters[dead_letter_origin(record.headers)].append(record)
    wrong: list[str] = []
    doubled: list[str] = []
    for s in sent:
        for group in CONSUMER_GROUPS[s.topic]:
            what = f"{s.kind} on {s.topic} (group {group})"
            found = letters.get((s.topic, str(s.partition), str(s.offset), group), [])
            if s.kind == "valid":
                doubled += [f"dead letter of a valid event: {what}"] * len(found)
                continue
            if not found:
                wrong.append(f"no dead letter of {what}")
                continue
            doubled += [f"another dead letter of {what}"] * (len(found) - 1)
            letter = found[0]
            reason = letter.headers.get("dlq-error", "")
            checks = {
                "dlq topic": letter.topic == f"{s.topic}.dlq",
                "same key": letter.key == s.key.encode(),
                "same value": letter.value == s.value,
                "original headers kept": letter.headers.get("content-type") == CONTENT_TYPE,
                "one attempt": letter.headers.get("dlq-attempts") == "1",
                "a reason": reason.startswith("invalid event"),
                "reason without the value": SECRET not in reason,
            }
            if failed := [name for name, ok in checks.items() if not ok]:
                wrong.append(f"dead letter of {what}: not {failed} (reason {reason!r})")
    return wrong, doubled


async def dead_letters_of(bootstrap: str, sent: list[Sent]) -> list[Record]:
    """The records in the dead-letter topics that carry one of our keys."""
    keys = {s.key.encode() for s in sent}
    records = await read_to_end(bootstrap, [f"{topic}.dlq" for topic in CONSUMER_GROUPS])
    return [record for record in records if record.key in keys]


async def test_poison_on_every_consumed_topic_is_dead_lettered_and_consumers_keep_going(
    base_env: dict[str, str],
    servers: Servers,
    mongo: AsyncMongoClient[Document],
    tmp_path: Path,
    fault_report: FaultReport,
) -> None:
    bootstrap = servers.kafka_bootstrap
    with running_system(base_env, tmp_path, database_suffix=f"poison_{RUN}") as system:
        stores = Stores.of(mongo, system)
        sent = await produce_poison_then_valid(bootstrap)
        produced_at = time.monotonic()

        async def all_handled() -> bool:
            return not await missing_handling(sent, stores)

        with contextlib.suppress(TimeoutError):  # `missing` says what never came
            await eventually(all_handled, timeout_s=90, every_s=0.5)
        caught_up_s = time.monotonic() - produced_at
        missing = await missing_handling(sent, stores)

        poison_sent = [s for s in sent if s.kind != "valid"]
        expected = sum(len(CONSUMER_GROUPS[s.topic]) for s in poison_sent)

        async def all_dead_lettered() -> bool:
            return len(await dead_letters_of(bootstrap, sent)) >= expected

        with contextlib.suppress(TimeoutError):  # `wrong` says which never came
            await eventually(all_dead_lettered, timeout_s=60, every_s=1)
        letters = await dead_letters_of(bootstrap, sent)
        wrong, doubled = check_dead_letters(sent, letters)

    fault_report(
        fault="poison records",
        poison_records=len(poison_sent),
        poison_kinds=list(POISON_KINDS),
        largest_poison_bytes=max(len(s.value) for s in poison_sent),
        dead_letters=len(letters),
        expected_dead_letters=expected,
        dead_letters_by_topic=dict(Counter(letter.topic for letter in letters)),
        valid_events=len(sent) - len(poison_sent),
        lost=len(missing) + sum(w.startswith("no dead letter") for w in wrong),
        doubled=len(doubled),
        caught_up_s=round(caught_up_s, 1),
    )
    assert missing == [], missing
    assert wrong == [], wrong
    assert doubled == [], doubled

"""Fault tests: the database hangs, poison records arrive, a Kafka broker dies.

Each test runs the three services as processes, drives requests through their HTTP APIs (and
events through Kafka between them), injects one fault with a real process signal, lets the
system recover on its own, and then checks every acknowledged request end to end: its document,
its event on the topic, and its effects in the other services.

How each fault is injected:

- Database hang: SIGSTOP to the MongoDB-protocol server of the session's local stack
  (`servers.pid("mongo")`), SIGCONT at least 10 s later, once the requests made meanwhile have
  their answers. Connections stay open and nothing answers, as with a hung database.
- Poison records: an independent aiokafka producer writes to every consumed topic a value that
  is not JSON, JSON of the wrong shape, a valid envelope of another event type and a ~900 KB
  value, each followed by a valid event on the same key (so on the same partition).
- Broker crash: a separate local stack with a 3-node KRaft cluster; SIGKILL to the node leading
  partition 0 of posting.created while postings and applications keep coming; 10 s later
  `stack.sh start` brings it back. (A companion test starts the services with all three
  brokers in KAFKA_BOOTSTRAP_SERVERS.)
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection

from hirestream.shared.events.applications import (
    APPLICATION_STATUS_CHANGED,
    APPLICATION_SUBMITTED,
    ApplicationStatus,
    ApplicationStatusChanged,
    ApplicationSubmitted,
    Candidate,
    Match,
)
from hirestream.shared.events.envelope import CONTENT_TYPE, serialize
from hirestream.shared.events.types import utc_now
from tests.conftest import bearer
from tests.fault.conftest import FaultReport
from tests.support.factories import (
    new_posting_id,
    posting_body,
    posting_closed_event,
    posting_created_event,
    posting_updated_event,
)
from tests.support.kafka import Record, check_against_contract
from tests.support.polling import eventually
from tests.support.servers import Servers, from_local_stack, run_stack
from tests.support.system import System, running_system

pytestmark = pytest.mark.e2e

Document = dict[str, Any]

RUN = uuid.uuid4().hex[:8]
ORG = f"faults-{RUN}"
EMPLOYER = bearer("employer", sub=f"emp-{RUN}", org=ORG)
POSTING_MARK = f"Fault {RUN} posting"
CANDIDATE_MARK = f"cand-{RUN}"

READ_MODEL_GROUP = "applications.postings-read-model"
NOTIFICATIONS_GROUP = "notifications"
SUBMITTED = APPLICATION_SUBMITTED.name

# Longer than any database stall here: every request gets an HTTP answer, none is left unknown.
HTTP_TIMEOUT_S = 60.0
# A relay that claimed a document just before the database stopped holds its claim this long;
# short, so that the sweep takes such a document over soon after the database is back.
OUTBOX_LEASE_S = 5
# How long the system gets, after the fault, to complete every acknowledged request.
SETTLE_TIMEOUT_S = 180.0


# ------------------------------------------------------------------------------ the load


@dataclass
class Apis:
    postings: httpx.AsyncClient
    applications: httpx.AsyncClient
    notifications: httpx.AsyncClient

    @property
    def all(self) -> list[httpx.AsyncClient]:
        return [self.postings, self.applications, self.notifications]


@asynccontextmanager
async def api_clients(system: System) -> AsyncIterator[Apis]:
    def client(name: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=system.url(name), timeout=HTTP_TIMEOUT_S)

    apis = Apis(client("postings"), client("applications"), client("notifications"))
    async with apis.postings, apis.applications, apis.notifications:
        yield apis


@dataclass(frozen=True)
class Answer:
    """One write request and what it got back."""

    kind: str  # "posting" or "application"
    marker: str  # the posting's unique title, or the applying candidate's id
    status: int  # 0 when no HTTP answer came at all
    resource_id: str | None  # the id of what a 201 created
    response: httpx.Response | None = field(default=None, repr=False, compare=False)

    @property
    def acknowledged(self) -> bool:
        return self.status == 201


@dataclass
class Load:
    """Postings and applications, each unique, from concurrent clients; every answer noted."""

    apis: Apis
    targets: list[str]  # open postings the applications read model knows, to apply to
    answers: list[Answer] = field(default_factory=list)
    _numbers: Iterator[int] = field(default_factory=itertools.count)

    def _note(
        self, kind: str, marker: str, response: httpx.Response | None, id_field: str
    ) -> Answer:
        status = response.status_code if response is not None else 0
        resource_id = response.json()[id_field] if response and status == 201 else None
        answer = Answer(kind, marker, status, resource_id, response)
        self.answers.append(answer)
        return answer

    async def create_posting(self) -> Answer:
        marker = f"{POSTING_MARK} {next(self._numbers)}"
        try:
            response = await self.apis.postings.post(
                "/postings", json=posting_body(title=marker), headers=EMPLOYER
            )
        except httpx.HTTPError:
            response = None
        return self._note("posting", marker, response, "posting_id")

    async def apply(self) -> Answer:
        number = next(self._numbers)
        candidate = f"{CANDIDATE_MARK}-{number}"
        target = self.targets[number % len(self.targets)]
        try:
            response = await self.apis.applications.post(
                f"/postings/{target}/applications",
                json={
                    "name": f"Candidate {number}",
                    "email": f"{candidate}@example.com",
                    "resume_url": f"https://cv.example.com/{candidate}.pdf",
                    "skills": ["Python", "Kafka"],
                    "consent": {"processing": True},
                },
                headers=bearer("candidate", sub=candidate),
            )
        except httpx.HTTPError:
            response = None
        return self._note("application", candidate, response, "application_id")

    @asynccontextmanager
    async def running(self, *, workers: int, pause_s: float = 0.5) -> AsyncIterator[None]:
        """Keep `workers` clients posting and applying until the block ends."""
        stop = asyncio.Event()

        async def worker() -> None:
            while not stop.is_set():
                await asyncio.gather(self.create_posting(), self.apply())
                await asyncio.sleep(pause_s)

        workers_done = asyncio.gather(*(worker() for _ in range(workers)))
        try:
            yield
        finally:
            stop.set()
            await workers_done


async def open_postings(apis: Apis, stores: Stores, count: int = 3) -> list[str]:
    """Postings to apply to, once the applications read model holds them."""
    ids = []
    for number in range(count):
        created = await apis.postings.post(
            "/postings", json=posting_body(title=f"Fault {RUN} target {number}"), headers=EMPLOYER
        )
        assert created.status_code == 201, created.text
        ids.append(created.json()["posting_id"])

    async def all_viewed() -> bool:
        return len(await ids_in(stores.postings_view, ids)) == count

    await eventually(all_viewed, timeout_s=60)
    return ids


# ------------------------------------------------------------------------------ checking


@dataclass(frozen=True)
class Stores:
    """The collections that show what a request did, in each service's database."""

    postings: AsyncCollection[Document]
    applications: AsyncCollection[Document]
    postings_view: AsyncCollection[Document]  # applications' read model
    announced_postings: AsyncCollection[Document]  # notifications' facts
    notifications: AsyncCollection[Document]

    @classmethod
    def of(cls, client: AsyncMongoClient[Document], system: System) -> Stores:
        postings = client[system.databases["postings"]]
        applications = client[system.databases["applications"]]
        notifications = client[system.databases["notifications"]]
        return cls(
            postings=postings["postings"],
            applications=applications["applications"],
            postings_view=applications["postings_view"],
            announced_postings=notifications["announced_postings"],
            notifications=notifications["notifications"],
        )


async def ids_in(collection: AsyncCollection[Document], ids: Sequence[str]) -> set[str]:
    return {
        str(doc["_id"]) async for doc in collection.find({"_id": {"$in": list(ids)}}, {"_id": 1})
    }


async def in_app_notifications(
    stores: Stores, kinds: Sequence[str], subjects: Sequence[str]
) -> Counter[tuple[str, str, str]]:
    """(kind, subject, recipient) of the in-app notifications about `subjects`, counted."""
    found: Counter[tuple[str, str, str]] = Counter()
    query = {"subject": {"$in": list(subjects)}, "channel": "in_app"}
    async for doc in stores.notifications.find(query, {"kind": 1, "subject": 1, "recipient": 1}):
        if doc["kind"] in kinds:
            found[(doc["kind"], doc["subject"], doc["recipient"])] += 1
    return found


@asynccontextmanager
async def kafka_admin(bootstrap: str) -> AsyncIterator[Any]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


async def describe_topics(bootstrap: str, topics: Sequence[str]) -> dict[str, list[Document]]:
    """Each topic's partitions as the cluster metadata has them (leader, replicas, isr)."""
    async with kafka_admin(bootstrap) as admin:
        described = await admin.describe_topics(list(topics))
    return {topic["topic"]: topic["partitions"] for topic in described}


async def read_to_end(
    bootstrap: str, topics: Sequence[str], *, timeout_s: float = 60
) -> list[Record]:
    """Every record of `topics`, from the beginning to the end offsets as of this call,
    read without a consumer group."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    records: list[Record] = []
    try:
        partitions = [
            TopicPartition(topic, partition["partition"])
            for topic, partitions in (await describe_topics(bootstrap, topics)).items()
            for partition in partitions
        ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        async with asyncio.timeout(timeout_s):
            while pending := [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
                batch = await consumer.getmany(*pending, timeout_ms=500)
                for tp, messages in batch.items():
                    for m in messages:
                        if m.offset >= ends[tp]:
                            continue
                        record = Record(
                            topic=m.topic,
                            key=m.key,
                            value=m.value,
                            headers={k: v.decode(errors="replace") for k, v in m.headers},
                            partition=m.partition,
                            offset=m.offset,
                        )
                        check_against_contract(record)
                        records.append(record)
    finally:
        await consumer.stop()
    return records


def event_data(record: Record) -> dict[str, Any] | None:
    """The `data` of a well-formed event, else None (the topics hold poison records too)."""
    try:
        value = record.json()
    except ValueError:
        return None
    data = value.get("data") if isinstance(value, dict) else None
    return data if isinstance(data, dict) else None


def marker_of(record: Record) -> str | None:
    """Which load request an event belongs to: the posting's title or the candidate's id."""
    data = event_data(record)
    if data is None:
        return None
    if record.topic == "posting.created":
        title = data.get("title")
        return title if isinstance(title, str) else None
    candidate = data.get("candidate")
    return candidate.get("candidate_id") if isinstance(candidate, dict) else None


@dataclass
class Audit:
    """What became of every write request of a load, looked up in every service and topic."""

    answers: list[Answer]
    events: int = 0  # distinct events on the topics for acknowledged requests
    redelivered: int = 0  # extra copies of an event on the wire (same id; consumers dedupe)
    lost: list[str] = field(default_factory=list)  # acknowledged, but something is missing
    doubled: list[str] = field(default_factory=list)  # acknowledged, but something is twice
    # Answered 503, yet the write reached the database before it hung and landed later: an
    # unknown outcome, not a refusal (the client retries; applications with its
    # Idempotency-Key). What must never be is half a write: a document without its event.
    landed_after_503: list[str] = field(default_factory=list)
    half_written: list[str] = field(default_factory=list)
    missing: Counter[str] = field(default_factory=Counter)  # what the lost ones lack

    @property
    def acknowledged(self) -> int:
        return sum(answer.acknowledged for answer in self.answers)

    @property
    def statuses(self) -> dict[int, int]:
        return dict(Counter(answer.status for answer in self.answers))

    def figures(self) -> dict[str, Any]:
        return {
            "requests": len(self.answers),
            "acknowledged": self.acknowledged,
            "statuses": self.statuses,
            "events": self.events,
            "redelivered_events": self.redelivered,
            "lost": len(self.lost),
            "lost_lacking": dict(self.missing),
            "doubled": len(self.doubled),
            "landed_after_503": len(self.landed_after_503),
            "half_written": len(self.half_written),
        }


async def audit(answers: list[Answer], stores: Stores, bootstrap: str) -> Audit:
    """Look every request up: its documents (with their outbox published and emptied), its
    events on the topic, its effects in the applications read model and the notifications."""
    result = Audit(list(answers))
    postings = [a for a in result.answers if a.kind == "posting"]
    applications = [a for a in result.answers if a.kind == "application"]

    documents: defaultdict[str, list[Document]] = defaultdict(list)
    titles = [a.marker for a in postings]
    async for doc in stores.postings.find({"title": {"$in": titles}}, {"title": 1, "outbox": 1}):
        documents[doc["title"]].append(doc)
    candidates = [a.marker for a in applications]
    query = {"candidate.candidate_id": {"$in": candidates}}
    async for doc in stores.applications.find(query, {"candidate": 1, "outbox": 1}):
        documents[doc["candidate"]["candidate_id"]].append(doc)

    # Read after the documents: an emptied outbox means its events are already on the topic.
    events: defaultdict[str, set[str]] = defaultdict(set)
    copies: Counter[str] = Counter()
    for record in await read_to_end(bootstrap, ["posting.created", SUBMITTED]):
        marker = marker_of(record)
        if marker is not None and (marker.startswith((POSTING_MARK, CANDIDATE_MARK))):
            event_id = record.json()["id"]
            events[marker].add(event_id)
            copies[event_id] += 1

    acknowledged_postings = [a.resource_id for a in postings if a.resource_id]
    acknowledged_applications = [a.resource_id for a in applications if a.resource_id]
    viewed = await ids_in(stores.postings_view, acknowledged_postings)
    announced = await ids_in(stores.announced_postings, acknowledged_postings)
    told = await in_app_notifications(stores, [SUBMITTED], acknowledged_applications)

    for answer in result.answers:
        docs, ids = documents[answer.marker], events[answer.marker]
        if not answer.acknowledged:
            if docs or ids:
                note = (
                    f"{answer.kind} {answer.marker!r} got {answer.status}, and left "
                    f"{len(docs)} document(s) and {len(ids)} event(s) on the topic"
                )
                result.landed_after_503.append(note)
                if len(docs) != 1 or len(ids) != 1:
                    result.half_written.append(note)
            continue
        result.events += len(ids)
        missing = []
        if not docs:
            missing.append("document")
        if any(doc.get("outbox") for doc in docs):
            missing.append("outbox still pending")
        if not ids:
            missing.append("event")
        if answer.kind == "posting":
            missing += [
                name
                for name, seen in [("read model", viewed), ("notifications facts", announced)]
                if answer.resource_id not in seen
            ]
            counts = []
        else:
            recipients = {"candidate": f"user:{answer.marker}", "employer": f"org:{ORG}"}
            counts = [
                told[(SUBMITTED, answer.resource_id or "", who)] for who in recipients.values()
            ]
            missing += [
                f"in-app for the {party}"
                for party, n in zip(recipients, counts, strict=True)
                if n == 0
            ]
        result.missing.update(f"{answer.kind} {part}" for part in missing)
        if missing:
            result.lost.append(f"{answer}: missing {', '.join(missing)}")
        if len(docs) > 1 or len(ids) > 1 or any(n > 1 for n in counts):
            result.doubled.append(f"{answer}: {len(docs)} documents, {len(ids)} events, {counts}")
    result.redelivered = sum(n - 1 for n in copies.values())
    return result


async def settle(answers: list[Answer], stores: Stores, bootstrap: str) -> tuple[Audit, float]:
    """Wait until every acknowledged request is complete and every refused one that landed
    anyway is whole (or time out); the final audit and when it was complete (monotonic time).

    A write refused with 503 that landed when the database came back was never handed to
    the inline relay: the outbox sweep publishes its event within inline_grace +
    sweep_idle_interval_s (the longest idle wait), so "whole" is judged once that had its
    chance."""

    async def complete() -> Audit | None:
        found = await audit(answers, stores, bootstrap)
        return found if not found.lost and not found.half_written else None

    try:
        found = await eventually(complete, timeout_s=SETTLE_TIMEOUT_S, every_s=1)
    except TimeoutError:
        found = await audit(answers, stores, bootstrap)  # its `lost` says what never came
    return found, time.monotonic()


# ------------------------------------------------------------------- 3. the database hangs


def stack_pid(servers: Servers, name: str) -> int:
    if servers.stack_dir is None:
        pytest.fail(f"this fault test signals the {name} process: run it on the local stack")
    return servers.pid(name)


def assert_unavailable(response: httpx.Response | None, what: str) -> dict[str, Any]:
    """A 503 problem document with Retry-After; its body."""
    assert response is not None, f"{what}: no HTTP answer"
    assert response.status_code == 503, f"{what}: {response.status_code} {response.text}"
    assert response.headers.get("Retry-After"), f"{what}: no Retry-After"
    assert response.headers["content-type"].startswith("application/problem+json"), what
    body: dict[str, Any] = response.json()
    assert body["status"] == 503, body
    assert body["title"], body
    assert body["detail"], body
    return body


async def all_ready(apis: Apis) -> bool:
    try:
        answers = await asyncio.gather(*(client.get("/readyz") for client in apis.all))
    except httpx.HTTPError:
        return False
    return all(answer.status_code == 200 for answer in answers)


async def test_database_hang_answers_503_and_every_acknowledged_request_completes(
    base_env: dict[str, str],
    servers: Servers,
    mongo: AsyncMongoClient[Document],
    tmp_path: Path,
    fault_report: FaultReport,
) -> None:
    mongo_pid = stack_pid(servers, "mongo")
    with running_system(
        base_env,
        tmp_path,
        database_suffix=f"dbhang_{RUN}",
        extra_env={"OUTBOX_LEASE_S": str(OUTBOX_LEASE_S)},
    ) as system:
        stores = Stores.of(mongo, system)
        async with api_clients(system) as apis:
            load = Load(apis, await open_postings(apis, stores))
            async with load.running(workers=2):
                await asyncio.sleep(3)  # acknowledged requests before the fault

                os.kill(mongo_pid, signal.SIGSTOP)
                stopped_at = time.monotonic()
                try:
                    # Asked while it is stopped; they are answered once the driver gives up on
                    # the silent server, so it stays stopped until then (at least 10 s).
                    await asyncio.sleep(0.5)
                    created, read, applied, readiness = await asyncio.gather(
                        load.create_posting(),
                        apis.postings.get(f"/postings/{load.targets[0]}", headers=EMPLOYER),
                        load.apply(),
                        asyncio.gather(*(client.get("/readyz") for client in apis.all)),
                    )
                    probed_s = time.monotonic() - stopped_at
                    await asyncio.sleep(max(0.0, 10 - probed_s))
                finally:
                    os.kill(mongo_pid, signal.SIGCONT)
                    resumed_at = time.monotonic()

                await eventually(lambda: all_ready(apis), timeout_s=60)
                ready_s = time.monotonic() - resumed_at
                await asyncio.sleep(4)  # acknowledged requests after the fault

        found, complete_at = await settle(load.answers, stores, servers.kafka_bootstrap)

    fault_report(
        fault="database SIGSTOP",
        stopped_s=round(resumed_at - stopped_at, 1),
        probes_answered_s=round(probed_s, 1),
        refused_503=found.statuses.get(503, 0),
        **found.figures(),
        recovery_ready_s=round(ready_s, 1),
        recovery_effects_s=round(complete_at - resumed_at, 1),
    )
    assert_unavailable(created.response, "POST /postings")
    assert_unavailable(read, "GET /postings/{id}")
    assert_unavailable(applied.response, "POST /postings/{id}/applications")
    for response in readiness:
        body = assert_unavailable(response, "GET /readyz")
        assert body["checks"]["mongodb"] != "ok", body
        assert "mongodb" in body["detail"], body
    assert set(found.statuses) <= {201, 503}, found.statuses
    assert found.acknowledged > 0, found.statuses
    assert found.lost == [], found.lost
    assert found.doubled == [], found.doubled
    assert found.half_written == [], found.half_written


# ------------------------------------------------------------------- 4. poison records

# Who consumes each topic: a poison record is dead-lettered once per consumer group.
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
    return serialize(APPLICATION_SUBMITTED.new(data, source="tests"))


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
    return serialize(APPLICATION_STATUS_CHANGED.new(data, source="tests"))


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
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
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
                    meta = await producer.send_and_wait(
                        topic,
                        value,
                        key=key.encode(),
                        headers=[("content-type", CONTENT_TYPE.encode())],
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


# ------------------------------------------------------- 5. a broker of three is killed

TOPIC_LEVEL_CONFIG = 1  # DescribeConfigs config_source: DYNAMIC_TOPIC_CONFIG


async def min_insync_replicas(admin: Any, topics: Sequence[str]) -> dict[str, tuple[str, int]]:
    """Each topic's effective min.insync.replicas and where it comes from (config source)."""
    resources = [
        ConfigResource(ConfigResourceType.TOPIC, topic, {"min.insync.replicas": None})
        for topic in topics
    ]
    found = {}
    for response in await admin.describe_configs(resources):
        for resource in response.to_object()["resources"]:
            for entry in resource["config_entries"]:
                source = entry.get("config_source", -1)
                found[resource["resource_name"]] = (entry["config_value"], source)
    return found


async def replicated_three_ways(bootstrap: str) -> dict[str, Any]:
    """Check that every topic of the services has 3 replicas in sync on each partition and
    min.insync.replicas 2. The services set only the replication factor when they create a
    topic, so where min.insync.replicas is not a topic-level setting, it is set here."""
    async with kafka_admin(bootstrap) as admin:
        topics = sorted(t for t in await admin.list_topics() if not t.startswith("__"))
        described = await admin.describe_topics(topics)
        replicas = {
            (t["topic"], len(p["replicas"]), len(p["isr"]))
            for t in described
            for p in t["partitions"]
        }
        assert {(count, isr) for _, count, isr in replicas} == {(3, 3)}, replicas
        before = await min_insync_replicas(admin, topics)
        inherited = [topic for topic, (_, source) in before.items() if source != TOPIC_LEVEL_CONFIG]
        if inherited:
            await admin.alter_configs(
                [
                    ConfigResource(ConfigResourceType.TOPIC, topic, {"min.insync.replicas": "2"})
                    for topic in inherited
                ]
            )
        after = await min_insync_replicas(admin, topics)
    assert {value for value, _ in after.values()} == {"2"}, after
    return {
        "topics": len(topics),
        "replication_factor": 3,
        "min_insync_replicas": 2,
        "min_insync_before": sorted({value for value, _ in before.values()}),
        "min_insync_set_by_test_on": len(inherited),
    }


async def leader_of(bootstrap: str, topic: str, partition: int) -> tuple[int, int]:
    """The node leading a partition, and the active controller."""
    (leader,) = [
        p["leader"]
        for p in (await describe_topics(bootstrap, [topic]))[topic]
        if p["partition"] == partition
    ]
    async with kafka_admin(bootstrap) as admin:
        cluster = await admin.describe_cluster()
    return leader, cluster["controller_id"]


async def in_sync_replicas(bootstrap: str, topic: str) -> set[int]:
    """The nodes in sync on every partition of `topic`."""
    partitions = (await describe_topics(bootstrap, [topic]))[topic]
    return set.intersection(*(set(p["isr"]) for p in partitions))


async def restart_killed_node(cluster: Servers, attempts: int = 3) -> int:
    """`stack.sh start` until the killed node is back; how many tries it took.

    Its ports were picked free from the ephemeral range, so while it is down a client's
    outgoing connection (even one connecting to that very port) can hold one; a later try
    finds it free again."""
    for attempt in range(1, attempts):
        try:
            await asyncio.to_thread(cluster.stack, "start")
            return attempt
        except RuntimeError:
            await asyncio.sleep(5)
    await asyncio.to_thread(cluster.stack, "start")  # the last try: its error fails the test
    return attempts


@contextmanager
def three_node_stack(stack_dir: Path) -> Iterator[Servers]:
    """`from_local_stack` with three Kafka nodes, stopped also when it fails to start."""
    try:
        with from_local_stack(stack_dir, kafka_nodes=3) as started:
            yield started
    except BaseException:
        run_stack({"STACK_DIR": str(stack_dir)}, "stop")  # whatever did start
        raise


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    """A separate local stack whose Kafka is a 3-node KRaft cluster, stopped after the module.

    Its ports are picked free before the nodes bind them; on a busy machine another process's
    outgoing connection can take one in between, and then it starts once more on others."""
    with contextlib.ExitStack() as stack:
        try:
            started = stack.enter_context(three_node_stack(tmp_path_factory.mktemp("cluster")))
        except RuntimeError:
            started = stack.enter_context(three_node_stack(tmp_path_factory.mktemp("cluster")))
        yield started


def cluster_env(base_env: dict[str, str], cluster: Servers, bootstrap: str) -> dict[str, str]:
    """The services' environment on the cluster's stack, topics created with 3 replicas."""
    return {
        **base_env,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "MONGODB_URL": cluster.mongodb_url,
        "SMTP_HOST": cluster.smtp_host,
        "SMTP_PORT": str(cluster.smtp_port),
        "KAFKA_TOPIC_REPLICATION": "3",
    }


def test_services_start_with_a_bootstrap_list_of_three_brokers(
    base_env: dict[str, str], cluster: Servers, tmp_path: Path
) -> None:
    """KAFKA_BOOTSTRAP_SERVERS as Kafka clients take it: every broker, comma-separated."""
    env = cluster_env(base_env, cluster, cluster.kafka_bootstrap)
    try:
        with running_system(env, tmp_path, database_suffix=f"list_{RUN}"):
            pass  # all three answered /readyz with 200
    except RuntimeError as error:
        pytest.fail(f"KAFKA_BOOTSTRAP_SERVERS={cluster.kafka_bootstrap}: {error}"[:3000])


async def test_a_broker_killed_under_load_loses_no_acknowledged_request(
    base_env: dict[str, str], cluster: Servers, tmp_path: Path, fault_report: FaultReport
) -> None:
    bootstrap = cluster.kafka_bootstrap
    # One broker's address is enough to bootstrap (the clients learn the others from it), and
    # the services do not start with the whole list yet: see the test above.
    env = cluster_env(base_env, cluster, bootstrap.split(",")[0])
    with running_system(env, tmp_path, database_suffix=f"cluster_{RUN}") as system:
        replication = await replicated_three_ways(bootstrap)
        mongo: AsyncMongoClient[Document] = AsyncMongoClient(cluster.mongodb_url, tz_aware=True)
        stores = Stores.of(mongo, system)
        try:
            async with api_clients(system) as apis:
                load = Load(apis, await open_postings(apis, stores))
                victim, controller = await leader_of(bootstrap, "posting.created", 0)
                async with load.running(workers=1, pause_s=1.0):
                    await asyncio.sleep(3)  # acknowledged requests before the fault
                    os.kill(cluster.pid(f"kafka-{victim}"), signal.SIGKILL)
                    killed_at = time.monotonic()
                    try:
                        await asyncio.sleep(10)
                    finally:
                        restart_attempts = await restart_killed_node(cluster)
                        restarted_at = time.monotonic()
                    await asyncio.sleep(3)  # acknowledged requests after the restart

                async def back_in_sync() -> bool:
                    return victim in await in_sync_replicas(bootstrap, "posting.created")

                await eventually(back_in_sync, timeout_s=60, every_s=0.5)
                in_sync_s = time.monotonic() - restarted_at
                found, complete_at = await settle(load.answers, stores, bootstrap)
        finally:
            await mongo.close()

    fault_report(
        fault="SIGKILL of one of three Kafka nodes",
        killed_node=victim,
        killed_node_was_controller=victim == controller,
        **replication,
        down_s=round(restarted_at - killed_at, 1),
        restart_attempts=restart_attempts,
        **found.figures(),
        back_in_sync_s=round(in_sync_s, 1),
        recovery_effects_s=round(complete_at - restarted_at, 1),
    )
    assert found.statuses == {201: len(found.answers)}, found.statuses
    assert found.lost == [], found.lost
    assert found.doubled == [], found.doubled

"""What the fault tests share: the load they drive through the services' HTTP APIs, and the
audit that looks every write request up afterwards in every service and on the topics.

Postings and applications are each unique (marked with this run's id), from concurrent clients;
every answer is noted. After the fault, `settle` waits until each acknowledged request is
complete (its document with the outbox emptied, its event on the topic, the applications read
model, the notifications) and each refused one that landed anyway is whole.

`WireTimedLoad` and `in_flight_at` tell which requests a service had in hand at a given moment
(the SIGTERM test): the ones written to a connection it had accepted, not merely begun.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection

from hirestream.shared.events.applications import APPLICATION_SUBMITTED
from tests.conftest import bearer
from tests.support.factories import posting_body
from tests.support.kafka import Record, check_against_contract
from tests.support.load import ApplyLoad, Attempt, PlannedApplication
from tests.support.polling import eventually
from tests.support.servers import kafka_client
from tests.support.system import System

Document = dict[str, Any]

RUN = uuid.uuid4().hex[:8]
ORG = f"faults-{RUN}"
EMPLOYER = bearer("employer", sub=f"emp-{RUN}", org=ORG)
POSTING_MARK = f"Fault {RUN} posting"
CANDIDATE_MARK = f"cand-{RUN}"

SUBMITTED = APPLICATION_SUBMITTED.name

# Longer than any database stall here: every request gets an HTTP answer, none is left unknown.
HTTP_TIMEOUT_S = 60.0
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


_MARKER_NUMBERS = itertools.count()


@dataclass
class Load:
    """Postings and applications, each unique, from concurrent clients; every answer noted."""

    apis: Apis
    targets: list[str]  # open postings the applications read model knows, to apply to
    answers: list[Answer] = field(default_factory=list)
    # Shared by every load of the session: markers stay unique on the topics the tests share.
    _numbers: Iterator[int] = field(default_factory=lambda: _MARKER_NUMBERS)

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
        return cls.in_databases(client, system.databases)

    @classmethod
    def in_databases(cls, client: AsyncMongoClient[Document], databases: dict[str, str]) -> Stores:
        """The collections in the services' databases, by service name."""
        postings = client[databases["postings"]]
        applications = client[databases["applications"]]
        notifications = client[databases["notifications"]]
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
    admin = AIOKafkaAdminClient(**kafka_client(bootstrap))
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
        **kafka_client(bootstrap), enable_auto_commit=False, auto_offset_reset="earliest"
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


# ------------------------------------------------------------------- requests on the wire


@dataclass(frozen=True)
class SentAttempt(Attempt):
    """An attempt, when its request had been written whole to a connection, and when that
    connection was opened if the attempt opened it."""

    written: float | None = None  # time.monotonic(); None if no connection took it whole
    opened: float | None = None  # None: a kept-alive connection (or none at all)


class WireTimedLoad(ApplyLoad):
    """`ApplyLoad` whose attempts say when their request actually left for the server, from
    httpcore's trace. The call can start long before that on a busy client, waiting for the
    event loop or for a connection, and a server cannot be held to a request it never got.

    Its waiting attempts (`oldest_in_flight_s`) count from the write too. `_attempt` is
    `ApplyLoad._attempt` with the trace added."""

    async def _attempt(
        self, client: httpx.AsyncClient, plan: PlannedApplication, headers: dict[str, str]
    ) -> tuple[Attempt, httpx.Response | None]:
        key = plan.idempotency_key
        opened: float | None = None
        written: float | None = None

        async def trace(event: str, info: dict[str, Any]) -> None:
            nonlocal opened, written
            if event == "connection.connect_tcp.complete":
                opened = time.monotonic()
            elif event == "http11.send_request_body.complete":
                written = self._open[key] = time.monotonic()

        started = time.monotonic()
        try:
            response = await client.post(
                f"/postings/{plan.posting_id}/applications",
                json=plan.body,
                headers=headers,
                extensions={"trace": trace},
            )
        except httpx.TransportError as error:  # refused, reset, timed out
            ended = time.monotonic()
            return SentAttempt(started, ended, None, type(error).__name__, written, opened), None
        finally:
            self._open.pop(key, None)
        ended = time.monotonic()
        return SentAttempt(started, ended, response.status_code, None, written, opened), response


def in_flight_at(
    moment: float, attempts: Sequence[Attempt], *, opened_before_s: float
) -> list[Attempt]:
    """The attempts the server had in hand at `moment` (time.monotonic()) and had not answered:
    written whole before it, on a connection the server had accepted. A kept-alive one it had
    answered on already; one opened less than `opened_before_s` before may still have been
    waiting in the listen backlog (the kernel completes the handshake before the server takes
    the connection)."""
    return [
        attempt
        for attempt in attempts
        if isinstance(attempt, SentAttempt)
        and attempt.written is not None
        and attempt.written < moment < attempt.ended
        and (attempt.opened is None or attempt.opened < moment - opened_before_s)
    ]

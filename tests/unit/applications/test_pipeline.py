"""A posting's pipeline: counts per status and the median and p90 of the time spent in each,
computed from `application.*` events; the projection that keeps each application's steps
(idempotent, in any order); the consumer that feeds it; and who may read it."""

from __future__ import annotations

import random
import statistics
from datetime import datetime, timedelta
from typing import Any

import pytest
from pymongo import UpdateOne
from pymongo.errors import BulkWriteError

from hirestream.applications import handlers
from hirestream.applications.domain import (
    Application,
    Party,
    Pipeline,
    Step,
    percentile,
    pipeline_of,
    stays,
)
from hirestream.applications.services import posting_pipeline
from hirestream.applications.store import PipelineProjection
from hirestream.shared.events.applications import (
    APPLICATION_STATUS_CHANGED,
    APPLICATION_SUBMITTED,
    ApplicationStatus,
    ApplicationStatusChanged,
    ApplicationSubmitted,
)
from hirestream.shared.events.envelope import CloudEvent, source_of
from hirestream.shared.identity import Principal
from hirestream.shared.privacy import Erasure
from hirestream.shared.service_layer.errors import Forbidden, NotFound
from hirestream.shared.service_layer.unit_of_work import UnitOfWork
from hirestream.shared.storage.mongo import DUPLICATE_KEY
from tests.support.applications import (
    ADMIN,
    CANDIDATE,
    EMPLOYER,
    NOW,
    OTHER_EMPLOYER,
    POSTING_ID,
    FakeApplications,
    FakeErasureRequests,
    FakeJourneys,
    FakePostingViews,
    application_form,
    open_posting,
)

S = ApplicationStatus
HOUR = 3600.0
Event = ApplicationSubmitted | ApplicationStatusChanged


# --- the arithmetic ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [[5.0, 1.0], [3.0, 1.0, 2.0], [10.0, 0.0, 4.0, 4.0], [float(n * n) for n in range(1, 12)]],
)
def test_median_and_p90_are_the_usual_ones(values: list[float]) -> None:
    assert percentile(values, 0.5) == pytest.approx(statistics.median(values))
    p90 = statistics.quantiles(values, n=10, method="inclusive")[8]
    assert percentile(values, 0.9) == pytest.approx(p90)


def test_percentiles_of_one_value_and_of_none() -> None:
    assert percentile([42.0], 0.5) == 42.0
    assert percentile([42.0], 0.9) == 42.0
    assert percentile([], 0.5) is None
    assert percentile([3.0, 1.0], 0.0) == 1.0
    assert percentile([3.0, 1.0], 1.0) == 3.0


def journey(application_id: str, *moves: tuple[float, ApplicationStatus]) -> list[Event]:
    """The events of an application submitted at NOW + the first hours, then moved to each
    status at NOW + its hours, as the domain makes them."""
    (submitted_h, _), *rest = moves
    application, submitted = Application.submit(
        application_form(),
        application_id=application_id,
        candidate_id=f"cand-{application_id}",
        posting=open_posting(),
        now=NOW + timedelta(hours=submitted_h),
    )
    events: list[Event] = [submitted]
    for hours, status in rest:
        party = Party.CANDIDATE if status is S.WITHDRAWN else Party.EMPLOYER
        application, changed = application.move(
            status, by=party, user_id="u", reason=None, now=NOW + timedelta(hours=hours)
        )
        events.append(changed)
    return events


JOURNEYS = {
    "a": journey("a", (0, S.SUBMITTED), (1, S.SCREENING), (3, S.INTERVIEW), (4, S.OFFER),
                 (6, S.HIRED)),
    "b": journey("b", (0, S.SUBMITTED), (2, S.SCREENING), (2.5, S.REJECTED)),
    "c": journey("c", (1, S.SUBMITTED)),
    "d": journey("d", (0, S.SUBMITTED), (10, S.WITHDRAWN)),
}  # fmt: skip


def figures(pipeline: Pipeline) -> dict[str, tuple[Any, ...]]:
    return {
        f.status.value: (f.count, f.left, f.median_s, f.p90_s)
        for f in pipeline.statuses
        if f.count or f.left
    }


def steps_by_application(events: list[Event]) -> list[list[Step]]:
    grouped: dict[str, list[Step]] = {}
    for event in events:
        grouped.setdefault(event.application_id, []).append(Step.of(event))
    return list(grouped.values())


def test_the_pipeline_of_a_sequence_of_events() -> None:
    events = [event for events in JOURNEYS.values() for event in events]

    pipeline = pipeline_of(POSTING_ID, steps_by_application(events))

    assert pipeline.applications == 4
    assert [f.status for f in pipeline.statuses] == list(S)  # every status, workflow order
    assert figures(pipeline) == {
        # submitted: c is still there; a, b and d left it after 1 h, 2 h and 10 h
        "submitted": (1, 3, 2 * HOUR, 2 * HOUR + (10 - 2) * HOUR * 0.8),
        # screening: a 2 h, b 0.5 h
        "screening": (0, 2, 1.25 * HOUR, 0.5 * HOUR + 1.5 * HOUR * 0.9),
        "interview": (0, 1, 1 * HOUR, 1 * HOUR),
        "offer": (0, 1, 2 * HOUR, 2 * HOUR),
        "hired": (1, 0, None, None),
        "rejected": (1, 0, None, None),
        "withdrawn": (1, 0, None, None),
    }


def test_a_stay_whose_end_or_start_is_unknown_is_left_out() -> None:
    a = [Step.of(event) for event in JOURNEYS["a"]]
    without_screening = [step for step in a if step.status is not S.SCREENING]

    assert stays(without_screening) == [(S.INTERVIEW, HOUR), (S.OFFER, 2 * HOUR)]
    pipeline = pipeline_of(POSTING_ID, [without_screening[1:]])  # no submission either
    assert figures(pipeline) == {
        "interview": (0, 1, HOUR, HOUR),
        "offer": (0, 1, 2 * HOUR, 2 * HOUR),
        "hired": (1, 0, None, None),
    }


def test_a_stay_is_never_below_zero() -> None:
    at: datetime = NOW
    steps = [
        Step(application_id="x", posting_id="p", org="o", version=1, status=S.SUBMITTED, at=at),
        Step(
            application_id="x",
            posting_id="p",
            org="o",
            version=2,
            status=S.SCREENING,
            at=at - timedelta(seconds=5),  # another replica's clock, a little behind
        ),
    ]
    assert stays(steps) == [(S.SUBMITTED, 0.0)]


def test_the_newest_version_known_is_the_current_status_whatever_the_order() -> None:
    steps = [Step.of(event) for event in reversed(JOURNEYS["b"])]

    assert figures(pipeline_of(POSTING_ID, [steps]))["rejected"] == (1, 0, None, None)


def test_an_empty_posting_has_every_status_at_zero() -> None:
    pipeline = pipeline_of(POSTING_ID, [])

    assert pipeline.applications == 0
    assert {(f.count, f.left, f.median_s, f.p90_s) for f in pipeline.statuses} == {
        (0, 0, None, None)
    }


# --- the projection ----------------------------------------------------------------------------


class DocumentsInMemory:
    """As much of a collection as `PipelineProjection` uses: unordered `insert_many`,
    `bulk_write` of upserting `$set`s (dotted paths into objects), `find` by equality,
    `delete_many`. `duplicates` makes the next bulk writes fail as a racing upsert does."""

    def __init__(self) -> None:
        self.documents: dict[str, dict[str, Any]] = {}
        self.duplicates = 0
        self.writes = 0

    async def insert_many(self, documents: list[dict[str, Any]], ordered: bool) -> None:
        self.writes += 1
        taken = [index for index, d in enumerate(documents) if d["_id"] in self.documents]
        for index, document in enumerate(documents):
            if index not in taken:
                self.documents[document["_id"]] = document
        if taken:
            errors = [{"code": DUPLICATE_KEY, "index": index} for index in taken]
            raise BulkWriteError({"writeErrors": errors})

    async def bulk_write(self, writes: list[UpdateOne], ordered: bool) -> None:
        self.writes += 1
        if self.duplicates:
            self.duplicates -= 1
            raise BulkWriteError({"writeErrors": [{"code": DUPLICATE_KEY, "index": 0}]})
        for write in writes:
            document = self.documents.setdefault(
                write._filter["_id"], {"_id": write._filter["_id"]}
            )
            update: dict[str, Any] = write._doc  # type: ignore[assignment]
            changes: dict[str, Any] = update["$set"]
            for path, value in changes.items():
                *parents, leaf = path.split(".")
                target = document
                for part in parents:
                    target = target.setdefault(part, {})
                target[leaf] = value

    def find(self, query: dict[str, Any]) -> Any:
        async def found() -> Any:
            for document in list(self.documents.values()):
                if all(document.get(k) == v for k, v in query.items()):
                    yield document

        return found()

    async def delete_many(self, query: dict[str, Any]) -> None:
        self.documents.clear()


def projection() -> tuple[PipelineProjection, DocumentsInMemory]:
    collection = DocumentsInMemory()
    return PipelineProjection(collection), collection  # type: ignore[arg-type]


async def test_redelivered_and_reordered_events_leave_the_same_projection() -> None:
    events = [event for events in JOURNEYS.values() for event in events]
    once, once_documents = projection()
    for event in events:
        await once.record([Step.of(event)])

    shuffled = events * 3
    random.Random(7).shuffle(shuffled)
    again, again_documents = projection()
    for start in range(0, len(shuffled), 4):  # in batches, as the consumer gets them
        await again.record([Step.of(event) for event in shuffled[start : start + 4]])

    assert again_documents.documents == once_documents.documents
    expected = pipeline_of(POSTING_ID, steps_by_application(events))
    assert pipeline_of(POSTING_ID, await again.journeys(POSTING_ID)) == expected
    assert (await again.journeys("another-posting")) == []


async def test_a_racing_upsert_is_written_again() -> None:
    store, documents = projection()
    documents.duplicates = 1

    await store.record([Step.of(JOURNEYS["b"][1])])

    assert documents.writes == 2
    assert [[step.status for step in steps] for steps in await store.journeys(POSTING_ID)] == [
        [S.SCREENING]
    ]


async def test_a_submission_is_one_insert_and_a_redelivered_one_is_set_again() -> None:
    store, documents = projection()
    submissions = [Step.of(events[0]) for events in JOURNEYS.values()]

    await store.record(submissions)
    assert documents.writes == 1

    await store.record(submissions[:2])
    assert documents.writes == 3  # the refused insert, then the set
    assert len(await store.journeys(POSTING_ID)) == len(JOURNEYS)


async def test_rebuilding_from_scratch_starts_empty() -> None:
    store, _ = projection()
    await store.record([Step.of(event) for event in JOURNEYS["a"]])

    await store.clear()

    assert await store.journeys(POSTING_ID) == []


# --- the consumer ------------------------------------------------------------------------------


def envelope(event: Event) -> CloudEvent[Any]:
    source = source_of("applications")
    if isinstance(event, ApplicationSubmitted):
        return APPLICATION_SUBMITTED.new(event, source=source)
    return APPLICATION_STATUS_CHANGED.new(event, source=source)


def unused() -> UnitOfWork[Erasure]:
    raise AssertionError("not a pipeline's business")


async def test_the_pipeline_group_consumes_both_topics_into_the_projection() -> None:
    journeys = FakeJourneys()
    subscriptions = [
        s
        for s in handlers.subscriptions(
            FakePostingViews(), FakeApplications(), FakeErasureRequests(), unused, journeys
        )
        if s.group == handlers.PIPELINE_GROUP
    ]
    by_topic = {s.event_type.topic: s for s in subscriptions}
    assert handlers.PIPELINE_GROUP == "applications.pipeline"
    assert set(by_topic) == {"application.submitted", "application.status_changed"}
    assert by_topic["application.submitted"].batch

    submitted = [envelope(events[0]) for events in JOURNEYS.values()]
    await by_topic["application.submitted"].handler(submitted)
    for events in JOURNEYS.values():
        for event in events[1:]:
            await by_topic["application.status_changed"].handler(envelope(event))

    expected = pipeline_of(
        POSTING_ID, steps_by_application([e for events in JOURNEYS.values() for e in events])
    )
    assert pipeline_of(POSTING_ID, await journeys.journeys(POSTING_ID)) == expected


# --- who may read it ---------------------------------------------------------------------------


@pytest.mark.parametrize("caller", [EMPLOYER, ADMIN], ids=["the-postings-employer", "admin"])
async def test_the_postings_employer_and_an_admin_see_its_pipeline(caller: Principal) -> None:
    journeys = FakeJourneys()
    await journeys.record([Step.of(event) for event in JOURNEYS["b"]])

    pipeline = await posting_pipeline(
        POSTING_ID, caller, FakePostingViews(open_posting()), journeys
    )

    assert figures(pipeline)["rejected"] == (1, 0, None, None)


@pytest.mark.parametrize(
    "caller", [CANDIDATE, OTHER_EMPLOYER], ids=["a-candidate", "an-employer-of-another-org"]
)
async def test_anyone_else_is_refused(caller: Principal) -> None:
    with pytest.raises(Forbidden):
        await posting_pipeline(POSTING_ID, caller, FakePostingViews(open_posting()), FakeJourneys())


async def test_an_unknown_posting_is_not_found() -> None:
    with pytest.raises(NotFound):
        await posting_pipeline(POSTING_ID, ADMIN, FakePostingViews(), FakeJourneys())


async def test_a_candidate_is_refused_before_anything_is_read() -> None:
    class Unreadable(FakePostingViews):
        async def get(self, posting_id: str) -> None:
            raise AssertionError("read")

    with pytest.raises(Forbidden):
        await posting_pipeline(POSTING_ID, CANDIDATE, Unreadable(), FakeJourneys())

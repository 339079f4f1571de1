"""The applications stores on the real database, for what the in-memory fakes of the unit tests
(tests/support/applications.py) take for granted: one application per candidate and posting,
a change from a stale version refused, the Idempotency-Key record erased with the person, an
erasure request's confirmations each added once, and the pipeline projection the same whatever
the order and number of the steps' arrivals."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import pytest
from bson import ObjectId
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from hirestream.applications.domain import Confirmation, ErasureRequest, Party, Step
from hirestream.applications.store import (
    APPLICATIONS,
    ERASURE_REQUESTS,
    INDEXES,
    PIPELINE,
    ApplicationStore,
    ErasureRequestStore,
    PipelineProjection,
)
from hirestream.shared.events.applications import ApplicationStatus
from hirestream.shared.privacy import ERASED_NAME
from hirestream.shared.service_layer.unit_of_work import (
    AlreadyStored,
    IdempotencyRecord,
    StaleVersion,
    StoredRequest,
)
from hirestream.shared.storage.mongo import ensure_indexes
from tests.conftest import unique_db
from tests.support.applications import LATER, NOW, application_in
from tests.support.applications_integration import new_candidate

pytestmark = pytest.mark.integration

S = ApplicationStatus


@pytest.fixture
async def database(mongo: AsyncMongoClient[dict[str, Any]]) -> AsyncDatabase[dict[str, Any]]:
    database = mongo[unique_db("applications_stores")]
    await ensure_indexes(database, INDEXES)
    return database


@pytest.fixture
def store(database: AsyncDatabase[dict[str, Any]]) -> ApplicationStore:
    return ApplicationStore(database[APPLICATIONS])


async def test_a_second_application_to_the_same_posting_is_already_stored(
    store: ApplicationStore,
) -> None:
    candidate = new_candidate()
    first = application_in(S.SUBMITTED, application_id=str(ObjectId()), candidate_id=candidate)
    await store.insert(first, [], None)
    again = application_in(S.SUBMITTED, application_id=str(ObjectId()), candidate_id=candidate)

    with pytest.raises(AlreadyStored):
        await store.insert(again, [], None)

    assert await store.find_for(candidate, first.posting_id) == first
    elsewhere = again.model_copy(update={"posting_id": "6650f1c2e4b0a1b2c3d4e5ff"})
    await store.insert(elsewhere, [], None)  # the same candidate, another posting


async def test_a_change_from_a_stale_version_is_refused(store: ApplicationStore) -> None:
    application = application_in(S.SUBMITTED, version=1, application_id=str(ObjectId()))
    await store.insert(application, [], None)
    screened, _ = application.move(
        S.SCREENING, by=Party.EMPLOYER, user_id="user-recruiter-ana", reason=None, now=LATER
    )
    rejected, _ = application.move(
        S.REJECTED, by=Party.EMPLOYER, user_id="user-recruiter-bo", reason=None, now=LATER
    )
    await store.update(screened, [], expected_version=1)

    with pytest.raises(StaleVersion):
        await store.update(rejected, [], expected_version=1)

    assert await store.get(application.application_id) == screened


async def test_erasing_a_candidate_erases_their_idempotency_record_but_keeps_the_duplicate_guard(
    store: ApplicationStore,
) -> None:
    candidate = new_candidate()
    application = application_in(
        S.SUBMITTED, application_id=str(ObjectId()), candidate_id=candidate
    )
    record = IdempotencyRecord("apply-1", "hash-of-the-request", application.json_bytes())
    await store.insert(application, [], record)
    assert await store.stored_request(application.application_id) == StoredRequest(record)

    assert await store.anonymise_candidate(candidate) == 1

    assert await store.stored_request(application.application_id) == StoredRequest(None)
    erased = await store.find_for(candidate, application.posting_id)
    assert erased is not None
    assert (erased.candidate.name, erased.anonymised) == (ERASED_NAME, True)


async def test_the_latest_erasure_request_gets_each_confirmation_once(
    database: AsyncDatabase[dict[str, Any]],
) -> None:
    requests = ErasureRequestStore(database[ERASURE_REQUESTS])
    candidate = new_candidate()
    older, newer = (
        ErasureRequest.request(
            request_id=str(ObjectId()), candidate_id=candidate, requested_by=candidate, now=at
        )[0]
        for at in (NOW - timedelta(days=30), NOW)
    )
    for request in (older, newer):
        await requests.insert(request, [], None)
    confirmation = Confirmation(service="postings", erased_at=LATER, anonymised={"postings": 0})

    await requests.confirm(newer.request_id, confirmation)
    await requests.confirm(newer.request_id, confirmation)  # redelivered

    latest = await requests.latest_for(candidate)
    assert latest is not None
    assert latest.request_id == newer.request_id
    assert latest.confirmations == [confirmation]
    assert await requests.latest_for(new_candidate()) is None


async def test_the_pipeline_projection_is_the_same_whatever_the_order_and_redeliveries(
    database: AsyncDatabase[dict[str, Any]],
) -> None:
    statuses = [S.SUBMITTED, S.SCREENING, S.INTERVIEW]
    steps = [
        Step(
            application_id=f"app-{number}",
            posting_id="posting-1",
            org="acme",
            version=version,
            status=statuses[version - 1],
            at=NOW + timedelta(minutes=10 * number + version),
        )
        for number in range(6)
        for version in range(1, 1 + number % 3 + 1)
    ]
    in_order = PipelineProjection(database[f"{PIPELINE}_in_order"])
    for step in steps:
        await in_order.record([step])

    # Each step three times, shuffled: status changes before their submission, and
    # submissions whose document exists already, within a batch and across batches.
    arrivals = steps * 3
    random.Random(11).shuffle(arrivals)
    shuffled = PipelineProjection(database[f"{PIPELINE}_shuffled"])
    for start in range(0, len(arrivals), 5):
        await shuffled.record(arrivals[start : start + 5])

    def journeys(found: list[list[Step]]) -> list[list[Step]]:
        ordered = [sorted(steps, key=lambda step: step.version) for steps in found]
        return sorted(ordered, key=lambda steps: steps[0].application_id)

    expected = journeys(await in_order.journeys("posting-1"))
    assert len(expected) == 6
    assert journeys(await shuffled.journeys("posting-1")) == expected

"""Applying (`submit_application`) on in-memory stores: the posting must be known and open, one
application per candidate and posting, the event written with the application, and a retry
under the same Idempotency-Key answered with the first response."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from hirestream.applications.services import (
    ApplicationsUnitOfWork,
    SubmitApplication,
    submit_application,
)
from hirestream.shared.correlation import correlated
from hirestream.shared.events.applications import ApplicationStatus, ApplicationSubmitted
from hirestream.shared.service_layer.errors import Conflict, InvalidRequest, NotFound
from hirestream.shared.service_layer.idempotency import derived_id
from tests.support.applications import (
    CANDIDATE_USER,
    ORG,
    POSTING_ID,
    SOURCE,
    SUBMITTED,
    FakeApplications,
    FakePostingViews,
    closed_posting,
    open_posting,
    submission,
)
from tests.support.fakes import RecordingRelay

Uow = Callable[[], ApplicationsUnitOfWork]
OTHER_POSTING = "6650f1c2e4b0a1b2c3d4e5f7"


def nothing_written(applications: FakeApplications, relay: RecordingRelay) -> bool:
    return applications.writes == 0 and applications.outbox == [] and relay.notified == []


# --- the rules ---------------------------------------------------------------------------


async def test_an_application_to_an_open_posting_is_stored_with_its_match(
    unit_of_work: Uow, applications: FakeApplications
) -> None:
    submitted = await submit_application(submission(), unit_of_work())

    application = submitted.application
    assert not submitted.replayed
    assert await applications.get(application.application_id) == application
    assert (application.posting_id, application.org) == (POSTING_ID, ORG)
    assert application.candidate.candidate_id == CANDIDATE_USER
    assert (application.status, application.version) == (ApplicationStatus.SUBMITTED, 1)
    assert application.skills == ["python", "kafka", "postgresql"]
    assert application.match.score == 0.5
    assert application.match.matched_skills == ["python", "kafka"]
    assert application.match.missing_skills == ["mongodb", "kubernetes"]


async def test_application_submitted_is_written_with_the_application_and_relayed(
    unit_of_work: Uow, applications: FakeApplications, relay: RecordingRelay
) -> None:
    with correlated("req-4f1c"):
        application = (await submit_application(submission(), unit_of_work())).application

    [event] = applications.published()
    assert event.type == SUBMITTED
    assert event.subject == application.application_id
    assert event.source == SOURCE
    assert event.correlationid == "req-4f1c"
    assert event.data == ApplicationSubmitted.model_validate(application.model_dump())
    assert event.data.match.score == 0.5
    assert relay.notified == [application.application_id]


async def test_the_match_is_scored_against_the_postings_skills_in_the_read_model(
    unit_of_work: Uow, postings: FakePostingViews
) -> None:
    await postings.apply(open_posting(version=2, skills=["python", "go"]))

    application = (await submit_application(submission(), unit_of_work())).application

    assert application.match.score == 0.5
    assert application.match.missing_skills == ["go"]


@pytest.mark.parametrize(
    "verified", [None, "someone.else@example.com"], ids=["no-verified-email", "another-address"]
)
async def test_the_address_must_be_the_verified_one_of_the_token(
    unit_of_work: Uow, applications: FakeApplications, relay: RecordingRelay, verified: str | None
) -> None:
    command = replace(submission(), verified_email=verified)
    with pytest.raises(InvalidRequest) as refused:
        await submit_application(command, unit_of_work())

    assert refused.value.extensions["errors"][0]["field"] == "email"
    assert nothing_written(applications, relay)


async def test_the_verified_address_matches_whatever_the_case_of_its_domain(
    unit_of_work: Uow,
) -> None:
    command = submission()
    local, _, domain = command.form.email.partition("@")
    submitted = await submit_application(
        replace(command, verified_email=f"{local}@{domain.upper()}"), unit_of_work()
    )
    assert submitted.application.candidate.email == command.form.email


async def test_applying_to_an_unknown_posting_is_not_found(
    unit_of_work: Uow, applications: FakeApplications, relay: RecordingRelay
) -> None:
    with pytest.raises(NotFound) as refused:
        await submit_application(submission(OTHER_POSTING), unit_of_work())

    assert OTHER_POSTING in refused.value.detail
    assert nothing_written(applications, relay)


@pytest.mark.parametrize(
    "posting_id",
    [
        pytest.param(POSTING_ID, id="closed-after-it-was-seen-open"),
        pytest.param(OTHER_POSTING, id="known-only-from-its-closing"),
    ],
)
async def test_applying_to_a_closed_posting_is_a_conflict(
    unit_of_work: Uow,
    applications: FakeApplications,
    postings: FakePostingViews,
    relay: RecordingRelay,
    posting_id: str,
) -> None:
    await postings.apply(closed_posting(posting_id))

    with pytest.raises(Conflict) as refused:
        await submit_application(submission(posting_id), unit_of_work())

    assert "closed" in refused.value.detail
    assert nothing_written(applications, relay)


async def test_applying_twice_is_a_conflict_naming_the_existing_application(
    unit_of_work: Uow, applications: FakeApplications
) -> None:
    first = (await submit_application(submission(), unit_of_work())).application

    with pytest.raises(Conflict) as refused:
        await submit_application(submission(name="Maya O."), unit_of_work())

    assert refused.value.extensions == {"application_id": first.application_id}
    assert first.application_id in refused.value.detail
    assert list(applications.aggregates) == [first.application_id]
    assert len(applications.published()) == 1


async def test_another_candidate_or_another_posting_is_another_application(
    unit_of_work: Uow, applications: FakeApplications, postings: FakePostingViews
) -> None:
    await postings.apply(open_posting(posting_id=OTHER_POSTING))
    first = await submit_application(submission(), unit_of_work())

    other_candidate = await submit_application(
        submission(candidate_id="cand-0b1d2e3f"), unit_of_work()
    )
    other_posting = await submit_application(submission(OTHER_POSTING), unit_of_work())

    ids = {result.application.application_id for result in (first, other_candidate, other_posting)}
    assert len(ids) == 3
    assert len(applications.published()) == 3


# --- Idempotency-Key ---------------------------------------------------------------------


async def test_a_keyed_application_gets_the_id_derived_from_the_caller_and_key(
    unit_of_work: Uow,
) -> None:
    submitted = await submit_application(submission(key="apply-1"), unit_of_work())

    assert submitted.application.application_id == derived_id(CANDIDATE_USER, "apply-1")
    assert not submitted.replayed


async def test_a_retry_under_the_same_key_replays_the_first_response(
    unit_of_work: Uow, applications: FakeApplications, relay: RecordingRelay
) -> None:
    first = await submit_application(submission(key="apply-1"), unit_of_work())

    retry = await submit_application(submission(key="apply-1"), unit_of_work())

    assert retry.replayed
    assert retry.application.json_bytes() == first.application.json_bytes()
    assert applications.writes == 1
    assert len(applications.published()) == 1
    assert relay.notified == [first.application.application_id]


@pytest.mark.parametrize(
    "other",
    [
        pytest.param(lambda: submission(key="apply-1", cover_letter="Another."), id="other-body"),
        pytest.param(lambda: submission(OTHER_POSTING, key="apply-1"), id="other-posting"),
    ],
)
async def test_another_request_under_a_used_key_is_invalid_naming_the_header(
    unit_of_work: Uow,
    applications: FakeApplications,
    postings: FakePostingViews,
    other: Callable[[], SubmitApplication],
) -> None:
    await postings.apply(open_posting(posting_id=OTHER_POSTING))
    first = await submit_application(submission(key="apply-1"), unit_of_work())

    with pytest.raises(InvalidRequest) as refused:
        await submit_application(other(), unit_of_work())

    assert "Idempotency-Key" in refused.value.detail
    assert refused.value.extensions["errors"][0]["field"] == "Idempotency-Key"
    assert list(applications.aggregates.values()) == [first.application]


async def test_keys_are_per_caller(unit_of_work: Uow, applications: FakeApplications) -> None:
    mine = await submit_application(submission(key="apply-1"), unit_of_work())

    theirs = await submit_application(
        submission(candidate_id="cand-0b1d2e3f", key="apply-1"), unit_of_work()
    )

    assert not theirs.replayed
    assert theirs.application.application_id != mine.application.application_id
    assert len(applications.aggregates) == 2


async def test_a_retry_is_replayed_after_the_posting_closed(
    unit_of_work: Uow, postings: FakePostingViews
) -> None:
    first = await submit_application(submission(key="apply-1"), unit_of_work())
    await postings.apply(closed_posting())

    retry = await submit_application(submission(key="apply-1"), unit_of_work())

    assert (retry.replayed, retry.application) == (True, first.application)


async def test_a_retry_is_replayed_after_the_posting_became_unknown(
    unit_of_work: Uow, postings: FakePostingViews
) -> None:
    first = await submit_application(submission(key="apply-1"), unit_of_work())
    postings.views.clear()  # the read model rebuilt from scratch, say

    retry = await submit_application(submission(key="apply-1"), unit_of_work())

    assert (retry.replayed, retry.application) == (True, first.application)


async def test_a_retry_of_a_refused_request_is_refused_again(
    unit_of_work: Uow, postings: FakePostingViews
) -> None:
    await postings.apply(closed_posting())

    for _ in range(2):
        with pytest.raises(Conflict):
            await submit_application(submission(key="apply-1"), unit_of_work())


async def test_a_retry_after_the_candidate_was_erased_is_a_conflict_not_a_replay(
    unit_of_work: Uow, applications: FakeApplications
) -> None:
    await submit_application(submission(key="apply-1"), unit_of_work())
    await applications.anonymise_candidate(CANDIDATE_USER)  # the first response is gone too

    with pytest.raises(Conflict) as refused:
        await submit_application(submission(key="apply-1"), unit_of_work())

    assert "Idempotency-Key" in refused.value.detail
    assert len(applications.published()) == 1


async def test_a_request_without_a_key_after_a_keyed_one_is_a_duplicate(
    unit_of_work: Uow,
) -> None:
    first = await submit_application(submission(key="apply-1"), unit_of_work())

    with pytest.raises(Conflict) as refused:
        await submit_application(submission(), unit_of_work())

    assert refused.value.extensions == {"application_id": first.application.application_id}

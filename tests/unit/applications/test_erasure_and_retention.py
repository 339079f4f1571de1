"""A candidate's erasure as this service runs it (`request_erasure`, `get_erasure`,
`record_confirmation`, `anonymise_candidate`) and retention (`apply_retention`), on
in-memory stores."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from hirestream.applications.domain import ErasureRequest
from hirestream.applications.services import (
    ErasureUnitOfWork,
    anonymise_candidate,
    apply_retention,
    get_erasure,
    record_confirmation,
    request_erasure,
)
from hirestream.shared.events.applications import ApplicationStatus
from hirestream.shared.events.privacy import (
    ERASING_SERVICES,
    CandidateErased,
    CandidateErasureRequested,
)
from hirestream.shared.identity import Principal
from hirestream.shared.privacy import ERASED_EMAIL, ERASED_NAME
from hirestream.shared.service_layer.errors import Forbidden, NotFound
from tests.support.applications import (
    ADMIN,
    ADMIN_USER,
    CANDIDATE,
    CANDIDATE_USER,
    EMPLOYER,
    NOW,
    OTHER_CANDIDATE,
    SOURCE,
    FakeApplications,
    FakeErasureRequests,
    application_in,
)
from tests.support.fakes import RecordingRelay

S = ApplicationStatus
Erasures = Callable[[], ErasureUnitOfWork]
ERASURE_REQUESTED = "candidate.erasure_requested"


def erased_by(service: str, request: ErasureRequest) -> CandidateErased:
    return CandidateErased(
        candidate_id=request.candidate_id,
        request_id=request.request_id,
        service=service,
        anonymised={"documents": 2},
        kept=["statuses"],
        erased_at=NOW,
    )


# --- requesting --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("caller", "requested_by"),
    [pytest.param(CANDIDATE, CANDIDATE_USER, id="themself"), pytest.param(ADMIN, ADMIN_USER)],
)
async def test_an_erasure_request_is_written_with_its_event_for_every_service(
    erasures: Erasures,
    requests: FakeErasureRequests,
    relay: RecordingRelay,
    caller: Principal,
    requested_by: str,
) -> None:
    request = await request_erasure(CANDIDATE_USER, caller, erasures())

    assert (request.candidate_id, request.requested_by) == (CANDIDATE_USER, requested_by)
    assert (request.complete, request.waiting_for) == (False, list(ERASING_SERVICES))
    assert await requests.get(request.request_id) == request
    [event] = requests.published()
    assert (event.type, event.subject, event.source) == (ERASURE_REQUESTED, CANDIDATE_USER, SOURCE)
    assert event.data == CandidateErasureRequested(
        candidate_id=CANDIDATE_USER,
        request_id=request.request_id,
        requested_by=requested_by,
        requested_at=request.requested_at,
    )
    assert relay.notified == [request.request_id]


@pytest.mark.parametrize(
    "caller",
    [pytest.param(OTHER_CANDIDATE, id="another-candidate"), pytest.param(EMPLOYER, id="employer")],
)
async def test_only_the_candidate_or_an_admin_may_request_or_read_an_erasure(
    erasures: Erasures, requests: FakeErasureRequests, relay: RecordingRelay, caller: Principal
) -> None:
    with pytest.raises(Forbidden):
        await request_erasure(CANDIDATE_USER, caller, erasures())
    assert (requests.writes, relay.notified) == (0, [])

    await request_erasure(CANDIDATE_USER, CANDIDATE, erasures())
    with pytest.raises(Forbidden):
        await get_erasure(CANDIDATE_USER, caller, erasures())


async def test_one_request_is_under_way_at_a_time(
    erasures: Erasures, requests: FakeErasureRequests
) -> None:
    first = await request_erasure(CANDIDATE_USER, CANDIDATE, erasures())
    await record_confirmation(erased_by("postings", first), requests)

    again = await request_erasure(CANDIDATE_USER, ADMIN, erasures())

    assert again.request_id == first.request_id
    assert again.waiting_for == ["applications", "notifications"]
    assert len(requests.published()) == 1


async def test_a_new_request_is_made_once_the_last_one_completed(
    erasures: Erasures, requests: FakeErasureRequests
) -> None:
    first = await request_erasure(CANDIDATE_USER, CANDIDATE, erasures())
    for service in ERASING_SERVICES:
        await record_confirmation(erased_by(service, first), requests)

    second = await request_erasure(CANDIDATE_USER, CANDIDATE, erasures())

    assert second.request_id != first.request_id
    assert [event.data.request_id for event in requests.published()] == [
        first.request_id,
        second.request_id,
    ]


# --- its status --------------------------------------------------------------------------


async def test_no_request_yet_is_not_found(erasures: Erasures) -> None:
    with pytest.raises(NotFound):
        await get_erasure(CANDIDATE_USER, CANDIDATE, erasures())


async def test_the_status_is_the_latest_request_with_its_confirmations(
    erasures: Erasures, requests: FakeErasureRequests
) -> None:
    request = await request_erasure(CANDIDATE_USER, CANDIDATE, erasures())
    await record_confirmation(erased_by("notifications", request), requests)

    status = await get_erasure(CANDIDATE_USER, ADMIN, erasures())

    assert status.request_id == request.request_id
    assert [c.service for c in status.confirmations] == ["notifications"]
    assert status.confirmations[0].anonymised == {"documents": 2}
    assert status.waiting_for == ["postings", "applications"]


async def test_confirmations_complete_a_request_and_a_redelivered_one_counts_once(
    erasures: Erasures, requests: FakeErasureRequests
) -> None:
    request = await request_erasure(CANDIDATE_USER, CANDIDATE, erasures())

    for service in (*ERASING_SERVICES, "postings"):
        await record_confirmation(erased_by(service, request), requests)

    status = await get_erasure(CANDIDATE_USER, CANDIDATE, erasures())
    assert status.complete
    assert sorted(c.service for c in status.confirmations) == sorted(ERASING_SERVICES)


async def test_a_confirmation_from_an_unknown_service_is_ignored(
    erasures: Erasures, requests: FakeErasureRequests
) -> None:
    request = await request_erasure(CANDIDATE_USER, CANDIDATE, erasures())

    await record_confirmation(erased_by("billing", request), requests)

    assert (await get_erasure(CANDIDATE_USER, CANDIDATE, erasures())).confirmations == []


# --- anonymising -------------------------------------------------------------------------


async def test_anonymising_a_candidate_erases_every_application_of_theirs_only() -> None:
    theirs = application_in(S.SUBMITTED, application_id="6650f1c2e4b0a1b2c3d4e601")
    also_theirs = application_in(
        S.HIRED, application_id="6650f1c2e4b0a1b2c3d4e602", posting_id="p-2"
    )
    someone_elses = application_in(
        S.SUBMITTED, application_id="6650f1c2e4b0a1b2c3d4e603", candidate_id="cand-other"
    )
    applications = FakeApplications(theirs, also_theirs, someone_elses)

    assert await anonymise_candidate(CANDIDATE_USER, applications) == {"applications": 2}

    for application_id in (theirs.application_id, also_theirs.application_id):
        erased = await applications.get(application_id)
        assert erased is not None
        assert (erased.candidate.name, erased.candidate.email) == (ERASED_NAME, ERASED_EMAIL)
        assert (erased.resume_url, erased.cover_letter, erased.anonymised) == ("", None, True)
        assert erased.status in (S.SUBMITTED, S.HIRED)  # the funnel keeps its facts
    assert await applications.get(someone_elses.application_id) == someone_elses


async def test_retention_anonymises_what_outlived_the_period_before_the_cutoff() -> None:
    """Which applications outlive it is the store's query (tests/integration/test_retention.py);
    the use case hands it the cutoff and reports the count."""
    old = NOW - timedelta(days=200)
    expired = application_in(S.REJECTED, submitted_at=old, updated_at=old)
    recent = application_in(
        S.HIRED, application_id="6650f1c2e4b0a1b2c3d4e601", candidate_id="cand-recent"
    )
    applications = FakeApplications(expired, recent)

    assert await apply_retention(NOW - timedelta(days=180), applications) == 1
    assert await apply_retention(NOW - timedelta(days=180), applications) == 0  # done already

    anonymised = [a.application_id for a in applications.aggregates.values() if a.anonymised]
    assert anonymised == [expired.application_id]

"""Moving an application through the workflow (`change_status`) on in-memory stores: who may
make which move, what a refusal says, the event each move writes, and what happens when a
concurrent change moved the application first."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from hirestream.applications.domain import Party
from hirestream.applications.services import (
    MOVE_ATTEMPTS,
    ApplicationsUnitOfWork,
    ChangeStatus,
    change_status,
)
from hirestream.shared.events.applications import ApplicationStatus, ApplicationStatusChanged
from hirestream.shared.identity import Principal
from hirestream.shared.service_layer.errors import Conflict, Forbidden, NotFound
from tests.support.applications import (
    ADMIN,
    ADMIN_USER,
    APPLICATION_ID,
    CANDIDATE,
    CANDIDATE_USER,
    EMPLOYER,
    EMPLOYER_USER,
    FINAL,
    LEGAL,
    OTHER_CANDIDATE,
    OTHER_EMPLOYER,
    STATUS_CHANGED,
    FakeApplications,
    application_in,
    moved_meanwhile,
    pair_id,
    touched_meanwhile,
)
from tests.support.fakes import RecordingRelay

S = ApplicationStatus
Uow = Callable[[], ApplicationsUnitOfWork]


def caller_for(party: Party) -> Principal:
    return CANDIDATE if party is Party.CANDIDATE else EMPLOYER


def moving(
    to_status: ApplicationStatus, caller: Principal, reason: str | None = None
) -> ChangeStatus:
    return ChangeStatus(APPLICATION_ID, to_status, reason, caller)


async def refused_untouched(
    applications: FakeApplications, relay: RecordingRelay, status: ApplicationStatus
) -> bool:
    stored = await applications.get(APPLICATION_ID)
    return (
        stored is not None
        and (stored.status, stored.version) == (status, 4)
        and applications.writes == 0
        and relay.notified == []
    )


# --- every move, by its party ------------------------------------------------------------


@pytest.mark.parametrize(("current", "target"), list(LEGAL), ids=pair_id)
async def test_each_allowed_move_is_made_by_its_party_and_written_with_its_event(
    unit_of_work: Uow,
    applications: FakeApplications,
    relay: RecordingRelay,
    current: ApplicationStatus,
    target: ApplicationStatus,
) -> None:
    applications.put(application_in(current, version=4))
    caller = caller_for(LEGAL[(current, target)])

    moved = await change_status(moving(target, caller), unit_of_work())

    assert (moved.status, moved.version) == (target, 5)
    assert [(c.from_status, c.to_status, c.changed_by) for c in moved.history] == [
        (current, target, caller.user_id)
    ]
    assert await applications.get(APPLICATION_ID) == moved
    [event] = applications.published()
    assert (event.type, event.subject) == (STATUS_CHANGED, APPLICATION_ID)
    assert isinstance(event.data, ApplicationStatusChanged)
    assert (event.data.from_status, event.data.to_status) == (current, target)
    assert (event.data.version, event.data.changed_by) == (5, caller.user_id)
    assert event.data.candidate_id == CANDIDATE_USER
    assert relay.notified == [APPLICATION_ID]


async def test_a_reason_is_kept_in_the_history_and_the_event(
    unit_of_work: Uow, applications: FakeApplications
) -> None:
    applications.put(application_in(S.INTERVIEW))
    reason = "We are looking for more hands-on Kubernetes experience."

    moved = await change_status(moving(S.REJECTED, EMPLOYER, reason), unit_of_work())

    assert moved.history[-1].reason == reason
    assert applications.published()[0].data.reason == reason


async def test_an_admin_moves_as_the_employer(
    unit_of_work: Uow, applications: FakeApplications
) -> None:
    applications.put(application_in(S.SUBMITTED))

    moved = await change_status(moving(S.SCREENING, ADMIN), unit_of_work())

    assert moved.history[-1].changed_by == ADMIN_USER
    applications.put(application_in(S.SUBMITTED))
    with pytest.raises(Forbidden):
        await change_status(moving(S.WITHDRAWN, ADMIN), unit_of_work())  # the candidate's


# --- refusals ----------------------------------------------------------------------------


@pytest.mark.parametrize("target", [s for s in S if s is not S.WITHDRAWN])
async def test_a_candidate_may_only_withdraw(
    unit_of_work: Uow,
    applications: FakeApplications,
    relay: RecordingRelay,
    target: ApplicationStatus,
) -> None:
    applications.put(application_in(S.SUBMITTED))

    with pytest.raises(Forbidden) as refused:
        await change_status(moving(target, CANDIDATE), unit_of_work())

    assert "employer" in refused.value.detail
    assert await refused_untouched(applications, relay, S.SUBMITTED)


async def test_an_employer_may_not_withdraw(
    unit_of_work: Uow, applications: FakeApplications, relay: RecordingRelay
) -> None:
    applications.put(application_in(S.INTERVIEW))

    with pytest.raises(Forbidden) as refused:
        await change_status(moving(S.WITHDRAWN, EMPLOYER), unit_of_work())

    assert "candidate" in refused.value.detail
    assert await refused_untouched(applications, relay, S.INTERVIEW)


async def test_the_wrong_party_is_forbidden_before_an_illegal_move_is_a_conflict(
    unit_of_work: Uow, applications: FakeApplications
) -> None:
    # Hired is final AND a candidate may not screen: they learn only that they may withdraw.
    applications.put(application_in(S.HIRED))

    with pytest.raises(Forbidden):
        await change_status(moving(S.SCREENING, CANDIDATE), unit_of_work())


async def test_an_illegal_move_is_a_conflict_naming_the_allowed_moves(
    unit_of_work: Uow, applications: FakeApplications, relay: RecordingRelay
) -> None:
    applications.put(application_in(S.SCREENING))

    with pytest.raises(Conflict) as refused:
        await change_status(moving(S.HIRED, EMPLOYER), unit_of_work())

    assert refused.value.extensions == {"allowed_moves": ["interview", "rejected", "withdrawn"]}
    assert "screening cannot move to hired" in refused.value.detail
    assert "allowed: interview, rejected, withdrawn" in refused.value.detail
    assert await refused_untouched(applications, relay, S.SCREENING)


@pytest.mark.parametrize("current", FINAL)
@pytest.mark.parametrize(
    ("target", "caller"), [(S.REJECTED, EMPLOYER), (S.SCREENING, ADMIN), (S.WITHDRAWN, CANDIDATE)]
)
async def test_a_final_status_allows_no_move(
    unit_of_work: Uow,
    applications: FakeApplications,
    relay: RecordingRelay,
    current: ApplicationStatus,
    target: ApplicationStatus,
    caller: Principal,
) -> None:
    applications.put(application_in(current))

    with pytest.raises(Conflict) as refused:
        await change_status(moving(target, caller), unit_of_work())

    assert refused.value.extensions == {"allowed_moves": []}
    assert "none (final status)" in refused.value.detail
    assert await refused_untouched(applications, relay, current)


@pytest.mark.parametrize(
    ("target", "caller"),
    [
        pytest.param(S.SCREENING, OTHER_EMPLOYER, id="employer-of-another-org"),
        pytest.param(S.WITHDRAWN, OTHER_CANDIDATE, id="another-candidate"),
        pytest.param(S.SCREENING, OTHER_CANDIDATE, id="another-candidate-not-forbidden"),
    ],
)
async def test_an_outsider_is_told_the_application_does_not_exist(
    unit_of_work: Uow,
    applications: FakeApplications,
    relay: RecordingRelay,
    target: ApplicationStatus,
    caller: Principal,
) -> None:
    applications.put(application_in(S.SUBMITTED))

    with pytest.raises(NotFound):
        await change_status(moving(target, caller), unit_of_work())

    assert await refused_untouched(applications, relay, S.SUBMITTED)


async def test_moving_an_unknown_application_is_not_found(unit_of_work: Uow) -> None:
    with pytest.raises(NotFound):
        await change_status(moving(S.SCREENING, ADMIN), unit_of_work())


# --- concurrent changes ------------------------------------------------------------------


async def test_a_move_made_stale_by_another_is_decided_again_on_the_stored_state(
    unit_of_work: Uow, applications: FakeApplications, relay: RecordingRelay
) -> None:
    applications.put(application_in(S.SUBMITTED))
    applications.concurrently(moved_meanwhile(S.SCREENING))

    moved = await change_status(moving(S.WITHDRAWN, CANDIDATE), unit_of_work())

    assert (moved.status, moved.version) == (S.WITHDRAWN, 6)
    assert [(c.from_status, c.to_status) for c in moved.history] == [
        (S.SUBMITTED, S.SCREENING),
        (S.SCREENING, S.WITHDRAWN),
    ]
    [event] = applications.published()
    assert (event.data.from_status, event.data.version) == (S.SCREENING, 6)
    assert relay.notified == [APPLICATION_ID]


async def test_a_move_another_made_illegal_meanwhile_is_a_conflict(
    unit_of_work: Uow, applications: FakeApplications, relay: RecordingRelay
) -> None:
    applications.put(application_in(S.SUBMITTED))
    applications.concurrently(moved_meanwhile(S.REJECTED))

    with pytest.raises(Conflict) as refused:
        await change_status(moving(S.SCREENING, EMPLOYER), unit_of_work())

    assert refused.value.extensions == {"allowed_moves": []}
    assert applications.published() == []


async def test_an_application_that_keeps_changing_is_a_conflict_to_retry_later(
    unit_of_work: Uow, applications: FakeApplications, relay: RecordingRelay
) -> None:
    applications.put(application_in(S.SUBMITTED, version=1))
    applications.concurrently(touched_meanwhile, times=MOVE_ATTEMPTS)

    with pytest.raises(Conflict) as refused:
        await change_status(moving(S.SCREENING, EMPLOYER), unit_of_work())

    assert refused.value.retry_after_s == 1
    assert "try again" in refused.value.detail
    stored = await applications.get(APPLICATION_ID)
    assert stored is not None
    assert (stored.status, stored.version) == (S.SUBMITTED, 1 + MOVE_ATTEMPTS)
    assert (applications.writes, relay.notified) == (0, [])


async def test_fewer_concurrent_changes_than_attempts_still_let_the_move_through(
    unit_of_work: Uow, applications: FakeApplications
) -> None:
    applications.put(application_in(S.SUBMITTED, version=1))
    applications.concurrently(touched_meanwhile, times=MOVE_ATTEMPTS - 1)

    moved = await change_status(moving(S.SCREENING, EMPLOYER), unit_of_work())

    assert (moved.status, moved.version) == (S.SCREENING, MOVE_ATTEMPTS + 1)
    assert moved.history[-1].changed_by == EMPLOYER_USER

"""The postings use cases on an in-memory store and a recording relay: publish (with an
Idempotency-Key), read, search, change under If-Match, and close with its retries. What each
commit wrote (the posting and its events, in one write) and what the relay was told."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from hirestream.postings.domain import PostingSearch
from hirestream.postings.services import (
    CLOSE_ATTEMPTS,
    ChangePosting,
    ClosePosting,
    IfMatch,
    PostingsUnitOfWork,
    change_posting,
    close_posting,
    get_posting,
    publish_posting,
    search_postings,
)
from hirestream.shared.correlation import correlated
from hirestream.shared.events.postings import (
    CloseReason,
    PostingClosed,
    PostingCreated,
    PostingStatus,
    PostingUpdated,
    Workplace,
)
from hirestream.shared.service_layer.errors import (
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    PreconditionFailed,
    PreconditionRequired,
)
from hirestream.shared.service_layer.idempotency import derived_id
from tests.support.fakes import RecordingRelay
from tests.support.postings import (
    ANY_VERSION,
    CLOSED,
    CREATED,
    NOW,
    ORG,
    OTHER_ORG,
    POSTING_ID,
    RECRUITER,
    SOURCE,
    UPDATED,
    FakePostings,
    changes,
    changing,
    closed_meanwhile,
    closed_posting,
    closing,
    edited,
    nothing_written,
    open_posting,
    publishing,
    version,
)

Uow = Callable[[], PostingsUnitOfWork]


# --- publish ---------------------------------------------------------------------------------


async def test_publishing_stores_an_open_posting_at_version_one(
    unit_of_work: Uow, postings: FakePostings
) -> None:
    published = await publish_posting(publishing(), unit_of_work())

    posting = published.posting
    assert not published.replayed
    assert await postings.get(posting.posting_id) == posting
    assert (posting.org, posting.status, posting.version) == (ORG, PostingStatus.OPEN, 1)
    assert posting.skills == ["python", "kafka", "mongodb", "kubernetes"]
    assert posting.closed_at is None


async def test_posting_created_is_written_with_the_posting_and_relayed(
    unit_of_work: Uow, postings: FakePostings, relay: RecordingRelay
) -> None:
    with correlated("req-7d2e"):
        posting = (await publish_posting(publishing(), unit_of_work())).posting

    [event] = postings.published()
    assert event.type == CREATED
    assert event.subject == posting.posting_id
    assert event.source == SOURCE
    assert event.correlationid == "req-7d2e"
    assert event.data == PostingCreated.model_validate(posting.model_dump())
    assert event.data.version == 1
    assert postings.writes == 1  # the posting and its event in one write
    assert relay.notified == [posting.posting_id]


async def test_without_a_correlation_id_the_event_carries_none(
    unit_of_work: Uow, postings: FakePostings
) -> None:
    await publish_posting(publishing(), unit_of_work())

    [event] = postings.published()
    assert event.correlationid is None


async def test_without_an_idempotency_key_each_request_publishes_a_new_posting(
    unit_of_work: Uow, postings: FakePostings
) -> None:
    first = await publish_posting(publishing(), unit_of_work())
    second = await publish_posting(publishing(), unit_of_work())

    assert first.posting.posting_id != second.posting.posting_id
    assert not second.replayed
    assert [event.type for event in postings.published()] == [CREATED, CREATED]


# --- publish with an Idempotency-Key ---------------------------------------------------------


async def test_the_id_is_derived_from_the_caller_and_the_key(unit_of_work: Uow) -> None:
    published = await publish_posting(publishing(key="p-1"), unit_of_work())

    assert published.posting.posting_id == derived_id(RECRUITER, "p-1")


async def test_a_retry_with_the_same_key_replays_the_first_posting_byte_for_byte(
    unit_of_work: Uow, postings: FakePostings, relay: RecordingRelay
) -> None:
    first = await publish_posting(publishing(key="p-1"), unit_of_work())

    retry = await publish_posting(publishing(key="p-1"), unit_of_work())

    assert retry.replayed
    assert retry.posting.json_bytes() == first.posting.json_bytes()
    assert len(postings.published()) == 1  # no second posting.created
    assert postings.writes == 1
    assert relay.notified == [first.posting.posting_id]


async def test_the_stored_record_keeps_the_first_response(
    unit_of_work: Uow, postings: FakePostings
) -> None:
    first = await publish_posting(publishing(key="p-1"), unit_of_work())

    stored = await postings.stored_request(first.posting.posting_id)

    assert stored is not None
    assert stored.record is not None
    assert stored.record.key == "p-1"
    assert stored.record.first_response == first.posting.json_bytes()


async def test_another_request_under_the_same_key_is_refused_naming_the_header(
    unit_of_work: Uow, postings: FakePostings
) -> None:
    first = await publish_posting(publishing(key="p-2"), unit_of_work())

    with pytest.raises(InvalidRequest) as refused:
        await publish_posting(publishing(key="p-2", title="QA Engineer"), unit_of_work())

    assert refused.value.extensions["errors"] == [
        {"field": "Idempotency-Key", "message": refused.value.detail}
    ]
    assert (await postings.get(first.posting.posting_id)) == first.posting
    assert len(postings.published()) == 1


async def test_the_same_draft_for_another_org_under_the_same_key_is_another_request(
    unit_of_work: Uow,
) -> None:
    await publish_posting(publishing(key="p-3"), unit_of_work())

    with pytest.raises(InvalidRequest):
        await publish_posting(publishing(key="p-3", org=OTHER_ORG), unit_of_work())


async def test_idempotency_keys_are_per_caller(unit_of_work: Uow, postings: FakePostings) -> None:
    ana = await publish_posting(publishing(key="k", caller="ana"), unit_of_work())
    ben = await publish_posting(publishing(key="k", caller="ben"), unit_of_work())

    assert not ben.replayed
    assert ana.posting.posting_id != ben.posting.posting_id
    assert [event.subject for event in postings.published()] == [
        ana.posting.posting_id,
        ben.posting.posting_id,
    ]


# --- read and search -------------------------------------------------------------------------


async def test_get_posting_returns_the_stored_posting(
    unit_of_work: Uow, postings: FakePostings
) -> None:
    assert await get_posting(POSTING_ID, unit_of_work()) == postings.aggregates[POSTING_ID]


@pytest.mark.parametrize("posting_id", ["6650f1c2e4b0a1b2c3d4e5ff", "not-an-id"])
async def test_get_posting_of_an_unknown_id_is_not_found(
    unit_of_work: Uow, posting_id: str
) -> None:
    with pytest.raises(NotFound):
        await get_posting(posting_id, unit_of_work())


async def test_search_returns_the_stores_page_for_the_search(
    unit_of_work: Uow, postings: FakePostings
) -> None:
    remote = open_posting("6650f1c2e4b0a1b2c3d4e601", workplace="remote")
    theirs = open_posting("6650f1c2e4b0a1b2c3d4e602", org=OTHER_ORG, workplace="remote")
    postings.put(remote)
    postings.put(theirs)
    postings.put(closed_posting("6650f1c2e4b0a1b2c3d4e603"))

    page = await search_postings(
        PostingSearch(org=ORG, workplace=Workplace.REMOTE), unit_of_work(), limit=10, cursor=None
    )

    assert page.items == [remote]
    assert page.next_cursor is None


# --- change (If-Match) -----------------------------------------------------------------------


async def test_a_change_makes_the_next_version_and_records_posting_updated(
    unit_of_work: Uow, postings: FakePostings, relay: RecordingRelay
) -> None:
    with correlated("req-91ab"):
        changed = await change_posting(
            changing(version(1), title="Principal Backend Developer"), unit_of_work()
        )

    assert changed.version == 2
    assert changed.title == "Principal Backend Developer"
    assert changed.company == "Acme Corp"  # fields not named stay as they were
    assert changed.created_at == NOW
    assert postings.aggregates[POSTING_ID] == changed
    [event] = postings.published()
    assert (event.type, event.subject, event.correlationid) == (UPDATED, POSTING_ID, "req-91ab")
    assert event.data == PostingUpdated.model_validate(changed.model_dump())
    assert event.data.version == 2
    assert relay.notified == [POSTING_ID]


async def test_null_removes_an_optional_field(unit_of_work: Uow) -> None:
    changed = await change_posting(changing(version(1), salary=None), unit_of_work())

    assert changed.salary is None
    assert changed.version == 2


@pytest.mark.parametrize(
    "org", [pytest.param(OTHER_ORG, id="another-org"), pytest.param(None, id="no-org")]
)
async def test_only_the_owning_org_may_change_a_posting(
    unit_of_work: Uow, postings: FakePostings, relay: RecordingRelay, org: str | None
) -> None:
    with pytest.raises(Forbidden):
        await change_posting(changing(version(1), org=org), unit_of_work())

    assert nothing_written(postings, relay)


async def test_a_change_without_if_match_is_refused_as_precondition_required(
    unit_of_work: Uow, postings: FakePostings, relay: RecordingRelay
) -> None:
    with pytest.raises(PreconditionRequired):
        await change_posting(changing(None), unit_of_work())

    assert nothing_written(postings, relay)


async def test_a_change_from_an_older_version_fails_its_precondition(
    unit_of_work: Uow, postings: FakePostings, relay: RecordingRelay
) -> None:
    postings.put(edited(open_posting()))  # now at version 2

    with pytest.raises(PreconditionFailed) as failed:
        await change_posting(changing(version(1)), unit_of_work())

    assert "version 2" in failed.value.detail
    assert nothing_written(postings, relay)


@pytest.mark.parametrize(
    "if_match",
    [
        pytest.param(ANY_VERSION, id="star"),
        pytest.param(version(1, 3), id="one-of-several"),
    ],
)
async def test_if_match_star_or_a_list_naming_the_version_is_accepted(
    unit_of_work: Uow, postings: FakePostings, if_match: IfMatch
) -> None:
    postings.put(edited(edited(open_posting())))  # at version 3

    changed = await change_posting(changing(if_match, workplace="remote"), unit_of_work())

    assert (changed.version, changed.workplace) == (4, Workplace.REMOTE)


async def test_a_closed_posting_cannot_be_changed(
    unit_of_work: Uow, postings: FakePostings, relay: RecordingRelay
) -> None:
    postings.put(closed_posting())

    with pytest.raises(Conflict):
        await change_posting(changing(version(2)), unit_of_work())

    assert nothing_written(postings, relay)


async def test_a_change_that_changes_nothing_keeps_the_version_and_records_no_event(
    unit_of_work: Uow, postings: FakePostings, relay: RecordingRelay
) -> None:
    stored = postings.aggregates[POSTING_ID]
    # The same values as stored, once normalised (skills in other cases).
    same = changing(
        version(1), title=stored.title, skills=["PYTHON", "kafka", "MongoDB", "Kubernetes"]
    )

    unchanged = await change_posting(same, unit_of_work())

    assert unchanged == stored
    assert nothing_written(postings, relay)


async def test_a_change_beaten_by_a_concurrent_one_fails_its_precondition(
    unit_of_work: Uow, postings: FakePostings, relay: RecordingRelay
) -> None:
    postings.concurrently(edited)  # committed between this change's read and its write

    with pytest.raises(PreconditionFailed):
        await change_posting(changing(version(1), title="Lead Developer"), unit_of_work())

    stored = postings.aggregates[POSTING_ID]
    assert (stored.version, stored.title) == (2, "Senior Backend Developer (edited)")
    assert nothing_written(postings, relay)


async def test_a_change_of_an_unknown_posting_is_not_found(unit_of_work: Uow) -> None:
    command = ChangePosting("6650f1c2e4b0a1b2c3d4e5ff", changes(title="Lead"), ORG, ANY_VERSION)
    with pytest.raises(NotFound):
        await change_posting(command, unit_of_work())


# --- close -----------------------------------------------------------------------------------


async def test_closing_makes_the_next_version_and_records_posting_closed(
    unit_of_work: Uow, postings: FakePostings, relay: RecordingRelay
) -> None:
    with correlated("req-c105"):
        closed = await close_posting(closing(reason=CloseReason.FILLED), unit_of_work())

    assert (closed.status, closed.version) == (PostingStatus.CLOSED, 2)
    assert closed.close_reason is CloseReason.FILLED
    assert closed.closed_at is not None
    assert closed.closed_at == closed.updated_at
    assert postings.aggregates[POSTING_ID] == closed
    [event] = postings.published()
    assert (event.type, event.subject, event.correlationid) == (CLOSED, POSTING_ID, "req-c105")
    assert event.data == PostingClosed(
        posting_id=POSTING_ID,
        org=ORG,
        reason=CloseReason.FILLED,
        version=2,
        closed_at=closed.closed_at,
        title=closed.title,
        contact_email="hiring@acme.example",
    )
    assert relay.notified == [POSTING_ID]


async def test_an_admin_may_close_any_orgs_posting(
    unit_of_work: Uow, postings: FakePostings
) -> None:
    closed = await close_posting(
        closing(None, is_admin=True, reason=CloseReason.EXPIRED), unit_of_work()
    )

    assert (closed.status, closed.close_reason, closed.org) == (
        PostingStatus.CLOSED,
        CloseReason.EXPIRED,
        ORG,
    )
    [event] = postings.published()
    assert event.data.org == ORG


@pytest.mark.parametrize(
    "org", [pytest.param(OTHER_ORG, id="another-org"), pytest.param(None, id="no-org")]
)
async def test_only_the_owning_org_or_an_admin_may_close(
    unit_of_work: Uow, postings: FakePostings, relay: RecordingRelay, org: str | None
) -> None:
    with pytest.raises(Forbidden):
        await close_posting(closing(org), unit_of_work())

    assert postings.aggregates[POSTING_ID].is_open
    assert nothing_written(postings, relay)


async def test_closing_a_closed_posting_is_a_conflict_and_keeps_the_first_reason(
    unit_of_work: Uow, postings: FakePostings, relay: RecordingRelay
) -> None:
    postings.put(closed_posting())

    with pytest.raises(Conflict):
        await close_posting(closing(reason=CloseReason.CANCELLED), unit_of_work())

    assert postings.aggregates[POSTING_ID].close_reason is CloseReason.FILLED
    assert nothing_written(postings, relay)


async def test_a_close_beaten_by_a_concurrent_change_is_decided_again_and_succeeds(
    unit_of_work: Uow, postings: FakePostings, relay: RecordingRelay
) -> None:
    postings.concurrently(edited)

    closed = await close_posting(closing(), unit_of_work())

    # Made from what was stored after the concurrent change: its fields and version kept.
    assert (closed.version, closed.status) == (3, PostingStatus.CLOSED)
    assert closed.title == "Senior Backend Developer (edited)"
    assert postings.aggregates[POSTING_ID] == closed
    [event] = postings.published()
    assert (event.type, event.data.version) == (CLOSED, 3)
    assert relay.notified == [POSTING_ID]


async def test_a_close_beaten_by_a_concurrent_close_is_a_conflict(
    unit_of_work: Uow, postings: FakePostings, relay: RecordingRelay
) -> None:
    postings.concurrently(closed_meanwhile)

    with pytest.raises(Conflict):
        await close_posting(closing(reason=CloseReason.FILLED), unit_of_work())

    assert postings.aggregates[POSTING_ID].close_reason is CloseReason.CANCELLED
    assert nothing_written(postings, relay)


async def test_a_close_gives_up_with_a_conflict_while_the_posting_keeps_changing(
    unit_of_work: Uow, postings: FakePostings, relay: RecordingRelay
) -> None:
    postings.concurrently(edited, times=CLOSE_ATTEMPTS)

    with pytest.raises(Conflict) as gave_up:
        await close_posting(closing(), unit_of_work())

    assert gave_up.value.retry_after_s == 1
    stored = postings.aggregates[POSTING_ID]
    assert (stored.status, stored.version) == (PostingStatus.OPEN, 1 + CLOSE_ATTEMPTS)
    assert nothing_written(postings, relay)


async def test_a_close_succeeds_on_its_last_attempt(
    unit_of_work: Uow, postings: FakePostings
) -> None:
    postings.concurrently(edited, times=CLOSE_ATTEMPTS - 1)

    closed = await close_posting(closing(), unit_of_work())

    assert closed.version == CLOSE_ATTEMPTS + 1
    assert [event.data.version for event in postings.published()] == [CLOSE_ATTEMPTS + 1]


async def test_closing_an_unknown_posting_is_not_found(unit_of_work: Uow) -> None:
    command = ClosePosting("6650f1c2e4b0a1b2c3d4e5ff", CloseReason.FILLED, ORG)
    with pytest.raises(NotFound):
        await close_posting(command, unit_of_work())


# --- the whole life --------------------------------------------------------------------------


async def test_a_postings_events_carry_versions_1_2_3_in_order(
    unit_of_work: Uow, postings: FakePostings, relay: RecordingRelay
) -> None:
    posting_id = (await publish_posting(publishing(), unit_of_work())).posting.posting_id
    await change_posting(
        ChangePosting(posting_id, changes(seniority="staff"), ORG, version(1)), unit_of_work()
    )
    await close_posting(ClosePosting(posting_id, CloseReason.FILLED, ORG), unit_of_work())

    events = [event for event in postings.published() if event.subject == posting_id]
    assert [(event.type, event.data.version) for event in events] == [
        (CREATED, 1),
        (UPDATED, 2),
        (CLOSED, 3),
    ]
    assert len({event.id for event in events}) == 3
    assert relay.notified == [posting_id] * 3

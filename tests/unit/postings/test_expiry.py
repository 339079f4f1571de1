"""Posting expiry without a database: the end a posting gets when published, the bounds on the
end an employer names (publishing or changing it), and the expiry job's use case, which closes
each posting past its end once, however many replicas run it and wherever a run was cut short."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

import pytest
from pydantic import ValidationError

from hirestream.postings.app import PostingsSettings
from hirestream.postings.domain import (
    ExpiryOutOfBounds,
    ExpiryPolicy,
    Posting,
    PostingIsClosed,
)
from hirestream.postings.services import (
    EXPIRY_BATCH,
    ChangePosting,
    NoLongerAdvertised,
    PostingsUnitOfWork,
    advertised_posting,
    change_posting,
    expire_posting,
    expire_postings,
    publish_posting,
)
from hirestream.shared.events.postings import CloseReason, PostingClosed, PostingStatus
from hirestream.shared.events.types import utc_now
from hirestream.shared.messaging.outbox import OutboxEntry
from hirestream.shared.service_layer.errors import InvalidRequest
from hirestream.shared.service_layer.unit_of_work import StaleVersion
from tests.support.fakes import RecordingRelay
from tests.support.postings import (
    CLOSED,
    NOW,
    POSTING_ID,
    FakePostings,
    changes,
    closed_posting,
    draft,
    edited,
    open_posting,
    postings_unit_of_work,
    publishing,
    version,
)

Uow = Callable[[], PostingsUnitOfWork]

DAY = timedelta(days=1)
JWT_SECRET = "k" * 16 + "Zq8-w3Rt!pX2vB7n"  # valid: 32 characters, not a placeholder
POLICY = ExpiryPolicy(default=30 * DAY, longest=90 * DAY)
# open_posting() is published at NOW with the default end: past it from here on.
AFTER_END = NOW + 31 * DAY


def ids(count: int) -> list[str]:
    return [f"6650f1c2e4b0a1b2c3d4{index:04x}" for index in range(count)]


def without_end(posting: Posting) -> Posting:
    """A posting stored before expiry existed."""
    return posting.model_copy(update={"expires_at": None})


# --- the policy, and publishing -------------------------------------------------------------


def test_a_posting_published_without_an_end_gets_the_default() -> None:
    posting, created = Posting.publish(draft(), posting_id="p1", org="acme", now=NOW, expiry=POLICY)

    assert posting.expires_at == NOW + 30 * DAY
    assert created.expires_at == posting.expires_at  # posting.created carries it


def test_the_default_policy_is_30_days_at_most_90() -> None:
    assert ExpiryPolicy() == POLICY


@pytest.mark.parametrize(
    "end",
    [
        pytest.param(NOW + timedelta(milliseconds=1), id="just-ahead"),
        pytest.param(NOW + 7 * DAY, id="a-week"),
        pytest.param(NOW + 90 * DAY, id="the-longest"),
    ],
)
def test_an_end_within_bounds_is_kept(end: datetime) -> None:
    posting, _ = Posting.publish(
        draft(expires_at=end.isoformat()), posting_id="p1", org="acme", now=NOW, expiry=POLICY
    )
    assert posting.expires_at == end


@pytest.mark.parametrize(
    ("end", "message"),
    [
        pytest.param(NOW - DAY, "in the future", id="past"),
        pytest.param(NOW, "in the future", id="now"),
        pytest.param(NOW + 90 * DAY + timedelta(milliseconds=1), "at most 90 days", id="too-far"),
    ],
)
def test_an_end_out_of_bounds_is_refused(end: datetime, message: str) -> None:
    with pytest.raises(ExpiryOutOfBounds, match=message):
        Posting.publish(
            draft(expires_at=end.isoformat()), posting_id="p1", org="acme", now=NOW, expiry=POLICY
        )


def test_the_bounds_follow_the_policy() -> None:
    short = ExpiryPolicy(default=timedelta(seconds=2), longest=timedelta(hours=1))
    posting, _ = Posting.publish(draft(), posting_id="p1", org="acme", now=NOW, expiry=short)
    assert posting.expires_at == NOW + timedelta(seconds=2)
    with pytest.raises(ExpiryOutOfBounds, match=r"at most 0\.0416667 days"):
        short.check(NOW + 2 * timedelta(hours=1), now=NOW)


@pytest.mark.parametrize(
    ("default", "longest"),
    [(0 * DAY, DAY), (-DAY, DAY), (2 * DAY, DAY)],
)
def test_a_policy_needs_a_positive_default_within_the_longest(
    default: timedelta, longest: timedelta
) -> None:
    with pytest.raises(ValueError, match="default lifetime"):
        ExpiryPolicy(default=default, longest=longest)


def test_the_settings_make_the_policy_and_refuse_a_default_beyond_the_longest() -> None:
    settings = PostingsSettings.model_validate(
        {"jwt_secret": JWT_SECRET, "posting_default_ttl_days": 7, "posting_max_ttl_days": 14}
    )
    assert settings.expiry == ExpiryPolicy(default=7 * DAY, longest=14 * DAY)
    assert PostingsSettings.model_validate({"jwt_secret": JWT_SECRET}).expiry == POLICY
    with pytest.raises(ValidationError, match="must not exceed POSTING_MAX_TTL_DAYS"):
        PostingsSettings.model_validate({"jwt_secret": JWT_SECRET, "posting_default_ttl_days": 91})


def test_an_end_without_a_time_zone_is_refused() -> None:
    with pytest.raises(ValidationError, match="expires_at"):
        draft(expires_at="2026-12-01T10:00:00")


async def test_publishing_an_end_out_of_bounds_is_invalid_naming_the_field(
    unit_of_work: Uow, postings: FakePostings, relay: RecordingRelay
) -> None:
    past = (utc_now() - DAY).isoformat()
    with pytest.raises(InvalidRequest) as refused:
        await publish_posting(publishing(expires_at=past), unit_of_work(), expiry=POLICY)

    assert refused.value.extensions["errors"][0]["field"] == "expires_at"
    assert postings.writes == 0
    assert relay.notified == []


async def test_publishing_keeps_an_end_within_bounds(unit_of_work: Uow) -> None:
    end = utc_now() + 10 * DAY
    published = await publish_posting(
        publishing(expires_at=end.isoformat()), unit_of_work(), expiry=POLICY
    )
    assert published.posting.expires_at == end


# --- changing the end (PATCH) ---------------------------------------------------------------


@pytest.mark.parametrize(
    "end",
    [
        pytest.param(NOW + 60 * DAY, id="extended"),
        pytest.param(NOW + DAY, id="shortened"),
        pytest.param(NOW + 90 * DAY, id="the-longest-from-the-change"),
    ],
)
def test_an_open_posting_may_move_its_end_within_bounds(end: datetime) -> None:
    posting = open_posting()

    changed, updated = posting.change(changes(expires_at=end), now=NOW, expiry=POLICY)

    assert (changed.expires_at, changed.version) == (end, 2)
    assert updated is not None
    assert updated.expires_at == end  # posting.updated carries it


def test_the_longest_is_counted_from_the_change() -> None:
    later = NOW + 80 * DAY
    changed, _ = open_posting().change(
        changes(expires_at=later + 90 * DAY), now=later, expiry=POLICY
    )
    assert changed.expires_at == later + 90 * DAY


@pytest.mark.parametrize(
    "end",
    [
        pytest.param(NOW - DAY, id="past"),
        pytest.param(NOW + 90 * DAY + timedelta(seconds=1), id="too-far"),
    ],
)
def test_a_change_cannot_move_the_end_out_of_bounds(end: datetime) -> None:
    with pytest.raises(ExpiryOutOfBounds):
        open_posting().change(changes(expires_at=end), now=NOW, expiry=POLICY)


def test_a_change_cannot_remove_the_end() -> None:
    with pytest.raises(ValidationError, match="cannot be null"):
        changes(expires_at=None)


def test_a_change_of_other_fields_keeps_the_end() -> None:
    posting = open_posting()
    changed, _ = posting.change(changes(title="Lead Developer"), now=NOW, expiry=POLICY)
    assert changed.expires_at == posting.expires_at


def test_the_same_end_again_is_no_change() -> None:
    posting = open_posting()
    assert posting.expires_at is not None
    same, updated = posting.change(changes(expires_at=posting.expires_at), now=NOW)
    assert (same, updated) == (posting, None)


def test_a_posting_from_before_expiry_may_be_given_an_end() -> None:
    changed, _ = without_end(open_posting()).change(changes(expires_at=NOW + DAY), now=NOW)
    assert changed.expires_at == NOW + DAY


def test_a_closed_posting_cannot_be_extended() -> None:
    with pytest.raises(PostingIsClosed):
        closed_posting().change(changes(expires_at=NOW + DAY), now=NOW)


async def test_changing_the_end_out_of_bounds_is_invalid_naming_the_field(
    unit_of_work: Uow, postings: FakePostings, relay: RecordingRelay
) -> None:
    command = ChangePosting(
        POSTING_ID, changes(expires_at=utc_now() + 91 * DAY), "acme", version(1)
    )
    with pytest.raises(InvalidRequest) as refused:
        await change_posting(command, unit_of_work(), expiry=POLICY)

    assert refused.value.extensions["errors"] == [
        {"field": "expires_at", "message": "expires_at must be at most 90 days ahead"}
    ]
    assert postings.writes == 0
    assert relay.notified == []


async def test_a_posting_past_its_end_not_yet_closed_may_still_be_extended(
    unit_of_work: Uow, postings: FakePostings
) -> None:
    # Published long ago, so already past its end: open until the expiry job gets to it.
    postings.put(open_posting().model_copy(update={"expires_at": utc_now() - DAY}))
    end = utc_now() + DAY

    changed = await change_posting(
        ChangePosting(POSTING_ID, changes(expires_at=end), "acme", version(1)), unit_of_work()
    )

    assert (changed.expires_at, changed.status) == (end, PostingStatus.OPEN)
    assert await expire_postings(unit_of_work, now=utc_now()) == 0


# --- the domain's expiry --------------------------------------------------------------------


def test_a_posting_expires_at_its_end_not_before() -> None:
    posting = open_posting()
    assert posting.expires_at is not None

    assert posting.expire(now=posting.expires_at - timedelta(milliseconds=1)) is None
    assert posting.is_advertised(posting.expires_at - timedelta(milliseconds=1))
    expired = posting.expire(now=posting.expires_at)
    assert expired is not None
    assert not posting.is_advertised(posting.expires_at)


def test_expiring_closes_with_reason_expired_and_tells_the_title_and_contact() -> None:
    posting = open_posting(contact_email="jobs@acme.example")

    expired = posting.expire(now=AFTER_END)

    assert expired is not None
    closed, event = expired
    assert (closed.status, closed.close_reason, closed.version) == (
        PostingStatus.CLOSED,
        CloseReason.EXPIRED,
        2,
    )
    assert closed.closed_at == AFTER_END
    assert event == PostingClosed(
        posting_id=POSTING_ID,
        org="acme",
        reason=CloseReason.EXPIRED,
        version=2,
        closed_at=AFTER_END,
        title="Senior Backend Developer",
        contact_email="jobs@acme.example",
    )


@pytest.mark.parametrize("reason", list(CloseReason))
def test_every_close_tells_the_title_and_contact(reason: CloseReason) -> None:
    _, event = open_posting(contact_email=None).close(reason, now=NOW)
    assert (event.title, event.contact_email) == ("Senior Backend Developer", None)


def test_closed_postings_and_postings_without_an_end_never_expire() -> None:
    assert closed_posting().expire(now=AFTER_END) is None
    legacy = without_end(open_posting())
    assert legacy.expire(now=NOW + 3650 * DAY) is None
    assert legacy.is_advertised(NOW + 3650 * DAY)


# --- the expiry job's use case --------------------------------------------------------------


async def test_the_job_closes_the_postings_past_their_end_each_with_its_event(
    unit_of_work: Uow, postings: FakePostings, relay: RecordingRelay
) -> None:
    expiring, later, legacy = ids(3)
    postings.put(open_posting(expiring))
    postings.put(open_posting(later).model_copy(update={"expires_at": AFTER_END + DAY}))
    postings.put(without_end(open_posting(legacy)))

    assert await expire_postings(unit_of_work, now=AFTER_END) == 2  # POSTING_ID and expiring

    for posting_id in (POSTING_ID, expiring):
        stored = postings.aggregates[posting_id]
        assert (stored.status, stored.close_reason) == (PostingStatus.CLOSED, CloseReason.EXPIRED)
    assert postings.aggregates[later].is_open
    assert postings.aggregates[legacy].is_open
    events = postings.published()
    assert sorted(event.subject for event in events) == sorted([POSTING_ID, expiring])
    assert {(event.type, event.data.reason) for event in events} == {(CLOSED, "expired")}
    assert sorted(relay.notified) == sorted([POSTING_ID, expiring])


async def test_a_second_run_finds_nothing_to_close(
    unit_of_work: Uow, postings: FakePostings
) -> None:
    assert await expire_postings(unit_of_work, now=AFTER_END) == 1
    assert await expire_postings(unit_of_work, now=AFTER_END + DAY) == 0
    assert len(postings.published()) == 1


async def test_a_posting_closed_by_another_replica_meanwhile_is_not_closed_again(
    unit_of_work: Uow, postings: FakePostings, relay: RecordingRelay
) -> None:
    def closed_by_another_replica(posting: Posting) -> Posting:
        expired = posting.expire(now=AFTER_END)
        assert expired is not None
        return expired[0]

    postings.concurrently(closed_by_another_replica)

    assert not await expire_posting(POSTING_ID, unit_of_work(), now=AFTER_END)

    assert postings.aggregates[POSTING_ID].version == 2  # one close only
    assert postings.published() == []  # the other replica recorded its own
    assert relay.notified == []


async def test_a_posting_extended_meanwhile_stays_open(
    unit_of_work: Uow, postings: FakePostings
) -> None:
    def extended(posting: Posting) -> Posting:
        changed, _ = posting.change(changes(expires_at=AFTER_END + DAY), now=AFTER_END)
        return changed

    postings.concurrently(extended)

    assert not await expire_posting(POSTING_ID, unit_of_work(), now=AFTER_END)

    stored = postings.aggregates[POSTING_ID]
    assert (stored.status, stored.version, stored.expires_at) == (
        PostingStatus.OPEN,
        2,
        AFTER_END + DAY,
    )


async def test_a_posting_changed_meanwhile_but_still_past_its_end_is_closed(
    unit_of_work: Uow, postings: FakePostings
) -> None:
    postings.concurrently(edited)

    assert await expire_posting(POSTING_ID, unit_of_work(), now=AFTER_END)

    stored = postings.aggregates[POSTING_ID]
    assert (stored.status, stored.version) == (PostingStatus.CLOSED, 3)
    [event] = postings.published()
    assert (event.data.version, event.data.title) == (3, "Senior Backend Developer (edited)")


class InterleavingPostings(FakePostings):
    """Every read gives way to other tasks, as a database round trip does: two replicas' runs
    read the same postings before either writes. Counts the writes refused as stale."""

    def __init__(self, *postings: Posting) -> None:
        super().__init__(*postings)
        self.refused = 0

    async def update(
        self, aggregate: Posting, outbox: Sequence[OutboxEntry], expected_version: int
    ) -> str:
        try:
            return await super().update(aggregate, outbox, expected_version)
        except StaleVersion:
            self.refused += 1
            raise

    async def get(self, aggregate_id: str) -> Posting | None:
        found = await super().get(aggregate_id)
        await asyncio.sleep(0)  # the answer is on its way back while others run
        return found

    async def expired(self, now: datetime, *, limit: int) -> list[Posting]:
        found = await super().expired(now, limit=limit)
        await asyncio.sleep(0)
        return found


async def test_two_replicas_running_the_job_at_once_close_each_posting_once() -> None:
    postings = InterleavingPostings(*(open_posting(posting_id) for posting_id in ids(25)))
    relay = RecordingRelay()

    def replica() -> PostingsUnitOfWork:
        return postings_unit_of_work(postings, relay)

    first, second = await asyncio.gather(
        expire_postings(replica, now=AFTER_END), expire_postings(replica, now=AFTER_END)
    )

    assert first + second == 25
    assert postings.refused > 0  # they did race: a write made from a stale read was refused
    events = postings.published()
    assert sorted(event.subject for event in events) == sorted(ids(25))
    assert all(posting.version == 2 for posting in postings.aggregates.values())


async def test_a_run_cut_short_is_finished_by_the_next_without_closing_any_twice() -> None:
    postings = FakePostings(*(open_posting(posting_id) for posting_id in ids(5)))

    def crash(posting: Posting) -> Posting:
        raise ConnectionError("the process died here")

    postings.concurrently(lambda posting: posting, times=2)  # two writes land,
    postings.concurrently(crash)  # then the run dies before the third
    relay = RecordingRelay()

    def uow() -> PostingsUnitOfWork:
        return postings_unit_of_work(postings, relay)

    with pytest.raises(ConnectionError):
        await expire_postings(uow, now=AFTER_END)
    assert len(postings.published()) == 2

    assert await expire_postings(uow, now=AFTER_END) == 3

    events = postings.published()
    assert sorted(event.subject for event in events) == sorted(ids(5))
    assert not any(posting.is_open for posting in postings.aggregates.values())


async def test_the_job_reads_batch_after_batch(relay: RecordingRelay) -> None:
    count = EXPIRY_BATCH + 3
    postings = FakePostings(*(open_posting(posting_id) for posting_id in ids(count)))

    closed = await expire_postings(lambda: postings_unit_of_work(postings, relay), now=AFTER_END)

    assert closed == count
    assert len(postings.published()) == count


# --- what job boards are shown --------------------------------------------------------------


async def test_only_a_posting_taking_applications_is_advertised(
    unit_of_work: Uow, postings: FakePostings
) -> None:
    running = open_posting().model_copy(update={"expires_at": utc_now() + DAY})
    postings.put(running)
    assert await advertised_posting(POSTING_ID, unit_of_work()) == running

    postings.put(running.model_copy(update={"expires_at": utc_now() - DAY}))
    with pytest.raises(NoLongerAdvertised):
        await advertised_posting(POSTING_ID, unit_of_work())

    postings.put(closed_posting())
    with pytest.raises(NoLongerAdvertised):
        await advertised_posting(POSTING_ID, unit_of_work())

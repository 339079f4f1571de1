"""The inbox's unread filter, count and read-all, and the employer told when its posting
expires (`posting.closed` with reason `expired`). The domain's plan, and the use cases on
in-memory fakes."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from hirestream.notifications import services
from hirestream.notifications.domain import (
    POSTING_CLOSED,
    Preferences,
    org_recipient,
    plan_posting_expired,
    user_recipient,
)
from hirestream.shared.events.envelope import CloudEvent, source_of
from hirestream.shared.events.notifications import Channel
from hirestream.shared.events.postings import POSTING_CLOSED as POSTING_CLOSED_EVENT
from hirestream.shared.events.postings import CloseReason, PostingClosed
from hirestream.shared.events.types import utc_now
from tests.support.notifications import (
    Case,
    case_posting,
    new_case,
    registration,
    stored_notification,
)
from tests.support.notifications_fakes import NotificationsFakes

IN_APP, EMAIL = Channel.IN_APP, Channel.EMAIL


@pytest.fixture
def fakes() -> NotificationsFakes:
    return NotificationsFakes()


# ------------------------------------------------------------------------------ the inbox


def three_in_the_inbox(fakes: NotificationsFakes, case: Case) -> list[str]:
    """Three in-app items of the candidate (the oldest read), an email, another's item."""
    mine, now = user_recipient(case.candidate_id), utc_now()
    items = [
        stored_notification(mine, "a1", created_at=now - timedelta(minutes=2), read=True),
        stored_notification(mine, "a2", created_at=now - timedelta(minutes=1)),
        stored_notification(mine, "a3", created_at=now),
        stored_notification(mine, "a3", channel=Channel.EMAIL, email=case.email),
        stored_notification(user_recipient("someone-else"), "theirs"),
    ]
    fakes.notifications.put(*items)
    return [item.notification_id for item in items]


async def test_the_unread_filter_shows_the_unread_items_newest_first(
    fakes: NotificationsFakes,
) -> None:
    case = new_case()
    three_in_the_inbox(fakes, case)
    unread = await services.inbox(
        case.candidate_caller, fakes.uow(), limit=20, cursor=None, unread_only=True
    )
    everything = await services.inbox(case.candidate_caller, fakes.uow(), limit=20, cursor=None)
    assert [n.subject for n in unread.items] == ["a3", "a2"]
    assert [n.subject for n in everything.items] == ["a3", "a2", "a1"]


async def test_the_unread_count_counts_the_callers_unread_in_app_items(
    fakes: NotificationsFakes,
) -> None:
    case = new_case()
    three_in_the_inbox(fakes, case)
    assert await services.unread_count(case.candidate_caller, fakes.uow()) == 2
    assert await services.unread_count(new_case().candidate_caller, fakes.uow()) == 0


async def test_read_all_marks_the_callers_unread_items_and_says_how_many(
    fakes: NotificationsFakes,
) -> None:
    case = new_case()
    ids = three_in_the_inbox(fakes, case)

    assert await services.mark_all_read(case.candidate_caller, fakes.uow()) == 2
    assert await services.unread_count(case.candidate_caller, fakes.uow()) == 0
    assert fakes.notifications.stored[ids[-1]].read is False  # someone else's: untouched
    # Again: nothing left to change.
    assert await services.mark_all_read(case.candidate_caller, fakes.uow()) == 0


async def test_every_recruiter_of_an_org_reads_all_of_the_orgs_inbox(
    fakes: NotificationsFakes,
) -> None:
    case = new_case()
    org = org_recipient(case.org)
    fakes.notifications.put(stored_notification(org, "p1"), stored_notification(org, "p2"))
    assert await services.mark_all_read(case.employer_caller, fakes.uow()) == 2
    assert await services.unread_count(case.employer_caller, fakes.uow()) == 0


# --------------------------------------------------------------------- the expired posting


def posting_closed(
    case: Case, reason: CloseReason = CloseReason.EXPIRED, **changes: Any
) -> CloudEvent[PostingClosed]:
    fields: dict[str, Any] = {
        "posting_id": case.posting_id,
        "org": case.org,
        "reason": reason,
        "version": 3,
        "closed_at": utc_now(),
        "title": case.title,
        "contact_email": case.contact_email,
    }
    data = PostingClosed.model_validate({**fields, **changes})
    return POSTING_CLOSED_EVENT.new(data, source=source_of("postings"))


def test_an_expired_posting_tells_the_org_in_app_and_at_its_contact_email() -> None:
    case = new_case()
    plan = plan_posting_expired(posting_closed(case).data, None, {})
    org = org_recipient(case.org)
    assert {(p.recipient, p.channel, p.email) for p in plan} == {
        (org, IN_APP, None),
        (org, EMAIL, case.contact_email),
    }
    assert all(p.title == f"Your posting expired: {case.title}" for p in plan)


def test_without_a_contact_email_the_org_is_told_in_app_only() -> None:
    case = new_case()
    plan = plan_posting_expired(posting_closed(case, contact_email=None).data, None, {})
    assert [(p.channel, p.email) for p in plan] == [(IN_APP, None)]


def test_without_a_title_the_remembered_one_or_the_id_names_the_posting() -> None:
    closed = posting_closed(new_case(), title=None).data
    [remembered, *_] = plan_posting_expired(closed, "Data Engineer", {})
    [unknown, *_] = plan_posting_expired(closed, None, {})
    assert remembered.title == "Your posting expired: Data Engineer"
    assert unknown.title == f"Your posting expired: posting {closed.posting_id}"


@pytest.mark.parametrize("reason", [CloseReason.FILLED, CloseReason.CANCELLED])
def test_other_closes_tell_nobody(reason: CloseReason) -> None:
    assert plan_posting_expired(posting_closed(new_case(), reason).data, None, {}) == []


def test_an_org_that_turned_email_off_for_expiries_is_told_in_app_only() -> None:
    case = new_case()
    org = org_recipient(case.org)
    preferences = {org: Preferences(channels={POSTING_CLOSED: [IN_APP]})}
    plan = plan_posting_expired(posting_closed(case).data, None, preferences)
    assert [p.channel for p in plan] == [IN_APP]


async def test_an_expiry_handled_three_times_tells_the_org_once_per_channel(
    fakes: NotificationsFakes,
) -> None:
    case = new_case()
    event = posting_closed(case)
    for _ in range(3):
        await services.notify_posting_closed(event, fakes.uow())

    org = org_recipient(case.org)
    assert fakes.routes(case.posting_id) == {(org, IN_APP, None), (org, EMAIL, case.contact_email)}
    assert len(fakes.notifications.stored) == 2
    [email] = fakes.deliveries.handed  # handed to the worker once, when first made
    assert (email.channel, email.kind) == (EMAIL, POSTING_CLOSED)
    page = await services.inbox(case.employer_caller, fakes.uow(), limit=20, cursor=None)
    [item] = page.items
    assert (item.kind, item.subject, item.read) == (POSTING_CLOSED, case.posting_id, False)


async def test_an_expiry_names_the_posting_remembered_from_its_announcement(
    fakes: NotificationsFakes,
) -> None:
    case = new_case()
    await services.notify_posting_created(case_posting(case), fakes.uow())
    await services.notify_posting_closed(posting_closed(case, title=None), fakes.uow())
    [item] = fakes.notifications.of(org_recipient(case.org))[:1]
    assert item.title == f"Your posting expired: {case.title}"


async def test_a_filled_posting_tells_nobody_and_no_webhook(fakes: NotificationsFakes) -> None:
    case = new_case()
    await fakes.webhooks.create(
        f"org:{case.org}", case.org, registration("http://127.0.0.1:9/hooks")
    )
    await services.notify_posting_closed(posting_closed(case, CloseReason.FILLED), fakes.uow())
    assert fakes.notifications.stored == {}
    assert fakes.publisher.events == []

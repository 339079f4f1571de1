"""What people do with the notifications service: read and mark their inbox, choose their
channels, save job alerts, register webhooks and read their deliveries. The use cases on
in-memory fakes (tests/support/notifications.py); the HTTP mapping of their errors is proven
in tests/integration/test_notifications_api.py."""

from __future__ import annotations

from datetime import timedelta

import pytest

from hirestream.notifications import services
from hirestream.notifications.domain import (
    AlertCriteria,
    DeliveryStatus,
    Preferences,
    org_recipient,
    user_recipient,
)
from hirestream.shared.events.notifications import Channel
from hirestream.shared.events.types import utc_now
from hirestream.shared.identity import Principal, Role
from hirestream.shared.service_layer.errors import InvalidRequest, NotFound
from tests.support.notifications import (
    ADMIN,
    application_submitted,
    new_case,
    posting_created,
    registration,
    stored_notification,
)
from tests.support.notifications_fakes import (
    NotificationsFakes,
)

HOOK_URL = "http://127.0.0.1:9/hooks"


@pytest.fixture
def fakes() -> NotificationsFakes:
    return NotificationsFakes()


# ------------------------------------------------------------------------------- the inbox


async def test_a_candidate_reads_their_own_inbox_newest_first(fakes: NotificationsFakes) -> None:
    case = new_case()
    mine = user_recipient(case.candidate_id)
    fakes.notifications.put(
        stored_notification(mine, "older", created_at=utc_now() - timedelta(minutes=5)),
        stored_notification(mine, "newer"),
        stored_notification(user_recipient("someone-else"), "theirs"),
    )
    page = await services.inbox(case.candidate_caller, fakes.uow(), limit=20, cursor=None)
    assert [n.subject for n in page.items] == ["newer", "older"]


async def test_every_recruiter_of_an_org_reads_the_orgs_inbox(fakes: NotificationsFakes) -> None:
    case = new_case()
    await services.notify_applications_submitted([application_submitted(case)], fakes.uow())
    one, other = case.employer_caller, case.employer_caller  # two recruiters
    for recruiter in (one, other):
        page = await services.inbox(recruiter, fakes.uow(), limit=20, cursor=None)
        assert [n.recipient for n in page.items] == [org_recipient(case.org)]


async def test_marking_read_changes_that_notification_only(fakes: NotificationsFakes) -> None:
    case = new_case()
    mine = user_recipient(case.candidate_id)
    read, unread = stored_notification(mine, "a1"), stored_notification(mine, "a2")
    fakes.notifications.put(read, unread)

    marked = await services.mark_read(case.candidate_caller, read.notification_id, fakes.uow())

    assert marked.read is True
    assert fakes.notifications.stored[read.notification_id].read is True
    assert fakes.notifications.stored[unread.notification_id].read is False


async def test_someone_elses_notification_is_not_found_and_stays_unread(
    fakes: NotificationsFakes,
) -> None:
    case, stranger = new_case(), new_case()
    theirs = stored_notification(user_recipient(case.candidate_id), "a1")
    fakes.notifications.put(theirs)
    with pytest.raises(NotFound):
        await services.mark_read(stranger.candidate_caller, theirs.notification_id, fakes.uow())
    assert fakes.notifications.stored[theirs.notification_id].read is False


async def test_an_email_notification_is_not_in_the_inbox_to_mark(
    fakes: NotificationsFakes,
) -> None:
    case = new_case()
    await services.notify_applications_submitted([application_submitted(case)], fakes.uow())
    email = next(n for n in fakes.notifications.stored.values() if n.channel is Channel.EMAIL)
    with pytest.raises(NotFound):
        await services.mark_read(case.candidate_caller, email.notification_id, fakes.uow())


async def test_an_unknown_notification_is_not_found(fakes: NotificationsFakes) -> None:
    with pytest.raises(NotFound, match="not in your inbox"):
        await services.mark_read(new_case().candidate_caller, "no-such-id", fakes.uow())


# ----------------------------------------------------------------------------- preferences


async def test_preferences_start_as_the_defaults(fakes: NotificationsFakes) -> None:
    chosen = await services.preferences_of(new_case().candidate_caller, fakes.uow())
    assert chosen == Preferences()


async def test_chosen_preferences_are_kept_per_inbox(fakes: NotificationsFakes) -> None:
    case = new_case()
    chosen = Preferences(channels={"posting.created": [Channel.IN_APP]})
    assert await services.choose_preferences(case.candidate_caller, chosen, fakes.uow()) == chosen
    assert await services.preferences_of(case.candidate_caller, fakes.uow()) == chosen
    # Another recruiter of the org sees what one chose: the org's inbox has one set.
    org_choice = Preferences(channels={"application.submitted": []})
    await services.choose_preferences(case.employer_caller, org_choice, fakes.uow())
    assert await services.preferences_of(case.employer_caller, fakes.uow()) == org_choice


async def test_a_candidate_who_turned_email_off_for_applications_gets_none(
    fakes: NotificationsFakes,
) -> None:
    case = new_case()
    chosen = Preferences(channels={"application.submitted": [Channel.IN_APP]})
    await services.choose_preferences(case.candidate_caller, chosen, fakes.uow())
    await services.notify_posting_created(
        posting_created(case.posting_id, case.org, contact_email=case.contact_email), fakes.uow()
    )

    await services.notify_applications_submitted([application_submitted(case)], fakes.uow())

    assert {(n.recipient, n.channel) for n in fakes.notifications.stored.values()} == {
        (user_recipient(case.candidate_id), Channel.IN_APP),
        (org_recipient(case.org), Channel.IN_APP),
        (org_recipient(case.org), Channel.EMAIL),  # the employer's choice is its own
    }


# ------------------------------------------------------------------------------ job alerts


async def test_a_saved_alert_is_listed_newest_first_to_its_candidate_only(
    fakes: NotificationsFakes,
) -> None:
    case, other = new_case(), new_case()
    first = await services.save_alert(
        case.candidate_caller, AlertCriteria(city="Porto"), fakes.uow()
    )
    second = await services.save_alert(
        case.candidate_caller, AlertCriteria(skills=["Kafka"]), fakes.uow()
    )
    await services.save_alert(other.candidate_caller, AlertCriteria(), fakes.uow())

    page = await services.alerts_of(case.candidate_caller, fakes.uow(), limit=1, cursor=None)
    rest = await services.alerts_of(
        case.candidate_caller, fakes.uow(), limit=1, cursor=page.next_cursor
    )

    assert [a.alert_id for a in page.items + rest.items] == [second.alert_id, first.alert_id]
    assert rest.next_cursor is None
    assert second.skills == ["kafka"]
    assert second.candidate_id == case.candidate_id


async def test_a_deleted_alert_matches_no_more_and_a_second_delete_is_not_found(
    fakes: NotificationsFakes,
) -> None:
    case = new_case()
    alert = await services.save_alert(case.candidate_caller, AlertCriteria(), fakes.uow())

    await services.delete_alert(case.candidate_caller, alert.alert_id, fakes.uow())
    with pytest.raises(NotFound):
        await services.delete_alert(case.candidate_caller, alert.alert_id, fakes.uow())

    await services.notify_posting_created(posting_created(case.posting_id, case.org), fakes.uow())
    assert fakes.notifications.stored == {}


async def test_someone_elses_alert_is_not_found_and_kept(fakes: NotificationsFakes) -> None:
    case, stranger = new_case(), new_case()
    alert = await services.save_alert(case.candidate_caller, AlertCriteria(), fakes.uow())
    with pytest.raises(NotFound):
        await services.delete_alert(stranger.candidate_caller, alert.alert_id, fakes.uow())
    assert fakes.alerts.alerts == [alert]


# -------------------------------------------------------------------------------- webhooks


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hooks",  # plain http
        "https://127.0.0.1/hooks",  # loopback
        "https://169.254.169.254/latest/meta-data",  # cloud metadata
        "https://10.0.0.7/hooks",  # private
    ],
)
async def test_a_webhook_url_into_our_network_is_refused_naming_the_url(
    fakes: NotificationsFakes, url: str
) -> None:
    with pytest.raises(InvalidRequest) as refused:
        await services.register_webhook(
            new_case().employer_caller, registration(url), fakes.uow(), allow_private=False
        )
    assert [error["field"] for error in refused.value.extensions["errors"]] == ["url"]
    assert refused.value.detail.startswith("url: ")
    assert fakes.webhooks.webhooks == []


async def test_a_public_https_webhook_is_registered_for_the_employers_org(
    fakes: NotificationsFakes,
) -> None:
    case = new_case()
    wanted = registration("https://93.184.216.34/hooks")  # a public address, no lookup needed
    webhook = await services.register_webhook(
        case.employer_caller, wanted, fakes.uow(), allow_private=False
    )
    assert (webhook.owner, webhook.org, webhook.url) == (
        org_recipient(case.org),
        case.org,
        wanted.url,
    )
    # Any recruiter of the org manages it.
    page = await services.webhooks_of(case.employer_caller, fakes.uow(), limit=20, cursor=None)
    assert page.items == [webhook]


async def test_an_admins_webhook_belongs_to_no_org(fakes: NotificationsFakes) -> None:
    webhook = await services.register_webhook(
        ADMIN, registration(HOOK_URL), fakes.uow(), allow_private=True
    )
    assert (webhook.owner, webhook.org) == (user_recipient(ADMIN.user_id), None)
    other_admin = Principal("admin-2", Role.ADMIN)
    listed = await services.webhooks_of(other_admin, fakes.uow(), limit=20, cursor=None)
    assert listed.items == []


async def test_a_deleted_webhook_is_gone_and_a_second_delete_is_not_found(
    fakes: NotificationsFakes,
) -> None:
    case = new_case()
    hook = await services.register_webhook(
        case.employer_caller, registration(HOOK_URL), fakes.uow(), allow_private=True
    )
    await services.delete_webhook(case.employer_caller, hook.webhook_id, fakes.uow())
    assert fakes.webhooks.webhooks == []
    with pytest.raises(NotFound):
        await services.delete_webhook(case.employer_caller, hook.webhook_id, fakes.uow())


async def test_another_orgs_webhook_cannot_be_deleted(fakes: NotificationsFakes) -> None:
    case, other = new_case(), new_case()
    hook = await services.register_webhook(
        case.employer_caller, registration(HOOK_URL), fakes.uow(), allow_private=True
    )
    with pytest.raises(NotFound):
        await services.delete_webhook(other.employer_caller, hook.webhook_id, fakes.uow())
    assert fakes.webhooks.webhooks == [hook]


async def test_a_webhooks_deliveries_are_shown_to_its_owner_only(
    fakes: NotificationsFakes,
) -> None:
    case, other = new_case(), new_case()
    hook = await services.register_webhook(
        case.employer_caller, registration(HOOK_URL), fakes.uow(), allow_private=True
    )
    event = application_submitted(case)
    await services.notify_applications_submitted([event], fakes.uow())

    page = await services.deliveries_of(
        case.employer_caller, hook.webhook_id, fakes.uow(), limit=20, cursor=None
    )
    assert [(d.source_event_id, d.status) for d in page.items] == [
        (event.id, DeliveryStatus.PENDING)
    ]
    with pytest.raises(NotFound):
        await services.deliveries_of(
            other.employer_caller, hook.webhook_id, fakes.uow(), limit=20, cursor=None
        )

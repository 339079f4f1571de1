"""Who is told what when an event arrives: the notifications use cases for events, and the unit
of work they commit through, on in-memory fakes (tests/support/notifications.py).

The domain's plans are tested in test_domain.py; here, what the use cases add to them: the
facts remembered from earlier events, the preferences read, the org's and the admins'
webhooks, exactly once per event, the announcements, the hand-over to the delivery worker,
and erasure.
"""

from __future__ import annotations

import json

import pytest

from hirestream.notifications import services
from hirestream.notifications.domain import (
    AlertCriteria,
    DeliveryStatus,
    Notification,
    Preferences,
    delivered_event_id,
    org_recipient,
    user_recipient,
)
from hirestream.notifications.store import ANONYMOUS_BODY
from hirestream.shared.events.applications import ApplicationStatus
from hirestream.shared.events.envelope import serialize
from hirestream.shared.events.notifications import Channel, DeliveryOutcome
from hirestream.shared.events.types import utc_now
from hirestream.shared.privacy import ERASED_NAME
from tests.support.notifications import (
    ADMIN,
    Case,
    application_submitted,
    case_posting,
    new_case,
    posting_created,
    registration,
    status_changed,
    stored_notification,
)
from tests.support.notifications_fakes import (
    NotificationsFakes,
)

IN_APP, EMAIL, WEBHOOK = Channel.IN_APP, Channel.EMAIL, Channel.WEBHOOK
HOOK_URL = "http://127.0.0.1:9/hooks"


@pytest.fixture
def fakes() -> NotificationsFakes:
    return NotificationsFakes()


async def announced(fakes: NotificationsFakes, case: Case) -> None:
    """The case's posting (with a contact email) was announced before the application."""
    await services.notify_posting_created(case_posting(case), fakes.uow())


# -------------------------------------------------------------------------- posting.created

LISBON = {"city": "Lisbon", "country": "PT"}


async def test_each_candidate_whose_alert_matches_is_told_once(fakes: NotificationsFakes) -> None:
    ada, grace, linus = new_case("Ada Lovelace"), new_case("Grace Hopper"), new_case("Linus T")
    await fakes.alerts.create(ada.candidate_id, AlertCriteria(city="Lisbon", email=ada.email))
    await fakes.alerts.create(ada.candidate_id, AlertCriteria(skills=["kafka"]))  # matches too
    await fakes.alerts.create(grace.candidate_id, AlertCriteria(skills=["python"]))  # no address
    await fakes.alerts.create(linus.candidate_id, AlertCriteria(city="Porto", email=linus.email))
    posting = posting_created(ada.posting_id, ada.org, title="Platform Engineer", location=LISBON)

    await services.notify_posting_created(posting, fakes.uow())

    assert fakes.routes() == {
        (user_recipient(ada.candidate_id), IN_APP, None),
        (user_recipient(ada.candidate_id), EMAIL, ada.email),
        (user_recipient(grace.candidate_id), IN_APP, None),
    }
    assert {n.title for n in fakes.notifications.stored.values()} == {"New job: Platform Engineer"}
    assert {n.subject for n in fakes.notifications.stored.values()} == {ada.posting_id}


async def test_a_candidate_who_wants_job_alerts_in_app_only_gets_no_email(
    fakes: NotificationsFakes,
) -> None:
    case = new_case()
    await fakes.alerts.create(case.candidate_id, AlertCriteria(email=case.email))
    chosen = Preferences(channels={"posting.created": [IN_APP]})
    await fakes.preferences.put(user_recipient(case.candidate_id), chosen)

    await services.notify_posting_created(posting_created(case.posting_id, case.org), fakes.uow())

    assert fakes.routes() == {(user_recipient(case.candidate_id), IN_APP, None)}


async def test_a_candidate_erased_while_their_alert_was_matched_is_anonymised(
    fakes: NotificationsFakes,
) -> None:
    case = new_case()
    await fakes.alerts.create(case.candidate_id, AlertCriteria(email=case.email))
    fakes.erasures.erase(case.candidate_id)  # recorded after the alerts were read

    await services.notify_posting_created(posting_created(case.posting_id, case.org), fakes.uow())

    assert fakes.routes() == {
        (user_recipient(case.candidate_id), IN_APP, None),
        (user_recipient(case.candidate_id), EMAIL, None),  # the worker fails it unsent
    }
    assert fakes.alerts.alerts == []


async def test_a_posting_is_remembered_for_the_applications_that_follow(
    fakes: NotificationsFakes,
) -> None:
    case = new_case()
    await announced(fakes, case)
    [posting] = (await fakes.facts.postings_by_id({case.posting_id})).values()
    assert (posting.org, posting.title, posting.contact_email) == (
        case.org,
        case.title,
        case.contact_email,
    )


# -------------------------------------------------------------------- application.submitted


async def test_an_application_confirms_to_the_candidate_and_tells_the_employer(
    fakes: NotificationsFakes,
) -> None:
    case = new_case("Grace Hopper")
    await announced(fakes, case)

    await services.notify_applications_submitted([application_submitted(case)], fakes.uow())

    candidate, employer = user_recipient(case.candidate_id), org_recipient(case.org)
    assert fakes.routes(case.application_id) == {
        (candidate, IN_APP, None),
        (candidate, EMAIL, case.email),
        (employer, IN_APP, None),
        (employer, EMAIL, case.contact_email),  # the posting's contact address
    }
    [to_candidate] = [n for n in fakes.notifications.of(candidate) if n.in_app]
    [to_employer] = [n for n in fakes.notifications.of(employer) if n.in_app]
    assert to_candidate.title == f"Application sent: {case.title}"
    assert to_employer.title == f"New applicant for {case.title}"
    assert to_employer.body == "Grace Hopper applied (skills match 75%)."


async def test_without_the_posting_announced_the_employer_is_told_in_app_only(
    fakes: NotificationsFakes,
) -> None:
    case = new_case()
    await services.notify_applications_submitted([application_submitted(case)], fakes.uow())

    employer = fakes.notifications.of(org_recipient(case.org))
    assert [(n.channel, n.title) for n in employer] == [
        (IN_APP, f"New applicant for posting {case.posting_id}")
    ]


async def test_each_application_of_a_batch_is_told_to_its_own_org(
    fakes: NotificationsFakes,
) -> None:
    one, two = new_case(), new_case()
    events = [application_submitted(one), application_submitted(two)]

    await services.notify_applications_submitted(events, fakes.uow())

    for case in (one, two):
        assert {n.subject for n in fakes.notifications.of(org_recipient(case.org))} == {
            case.application_id
        }


async def test_the_orgs_webhooks_get_the_event_and_other_orgs_webhooks_do_not(
    fakes: NotificationsFakes,
) -> None:
    case, other = new_case(), new_case()
    ours = await fakes.webhooks.create(
        org_recipient(case.org), case.org, registration(HOOK_URL, "application.submitted")
    )
    await fakes.webhooks.create(
        org_recipient(case.org), case.org, registration(HOOK_URL, "posting.created")
    )
    await fakes.webhooks.create(
        org_recipient(other.org), other.org, registration(HOOK_URL, "application.submitted")
    )
    event = application_submitted(case)

    await services.notify_applications_submitted([event], fakes.uow())

    [delivery] = [n for n in fakes.notifications.stored.values() if n.channel is WEBHOOK]
    assert delivery.recipient == f"webhook:{ours.webhook_id}"
    assert delivery.webhook_id == ours.webhook_id
    assert delivery.payload == serialize(event).decode()  # the event as published
    assert delivery.status is DeliveryStatus.PENDING
    assert delivery in fakes.deliveries.handed


async def test_an_orgs_webhooks_follow_its_preferences_and_an_admins_always_deliver(
    fakes: NotificationsFakes,
) -> None:
    case = new_case()
    kind = "application.submitted"
    await fakes.webhooks.create(org_recipient(case.org), case.org, registration(HOOK_URL, kind))
    admins = await fakes.webhooks.create(
        user_recipient(ADMIN.user_id), None, registration(HOOK_URL)
    )
    await fakes.preferences.put(org_recipient(case.org), Preferences(channels={kind: [IN_APP]}))

    await services.notify_applications_submitted([application_submitted(case)], fakes.uow())

    assert {n.recipient for n in fakes.notifications.stored.values() if n.channel is WEBHOOK} == {
        f"webhook:{admins.webhook_id}"
    }


async def test_by_default_an_orgs_webhook_gets_applications_but_not_postings(
    fakes: NotificationsFakes,
) -> None:
    case = new_case()
    both = registration(HOOK_URL, "posting.created", "application.submitted")
    await fakes.webhooks.create(org_recipient(case.org), case.org, both)
    await fakes.alerts.create(case.candidate_id, AlertCriteria())

    await announced(fakes, case)
    await services.notify_applications_submitted([application_submitted(case)], fakes.uow())

    webhooks = [n for n in fakes.notifications.stored.values() if n.channel is WEBHOOK]
    assert [n.kind for n in webhooks] == ["application.submitted"]


async def test_a_redelivered_batch_makes_nothing_new_and_announces_the_in_app_ones_identically(
    fakes: NotificationsFakes,
) -> None:
    case = new_case()
    await announced(fakes, case)
    await fakes.webhooks.create(org_recipient(case.org), case.org, registration(HOOK_URL))
    event = application_submitted(case)
    await services.notify_applications_submitted([event], fakes.uow())
    stored, handed = dict(fakes.notifications.stored), list(fakes.deliveries.handed)
    first = list(fakes.publisher.events)

    await services.notify_applications_submitted([event, event], fakes.uow())

    assert fakes.notifications.stored == stored
    assert fakes.deliveries.handed == handed  # nothing delivered twice
    again = fakes.publisher.events[len(first) :]
    assert [e.data.channel for e in first] == [IN_APP, IN_APP]
    assert again == first  # the same ids, times and contents: consumers drop them


async def test_a_replayed_event_of_an_erased_candidate_brings_back_nothing_of_them(
    fakes: NotificationsFakes,
) -> None:
    case = new_case("Katherine Johnson")
    await announced(fakes, case)
    await fakes.webhooks.create(org_recipient(case.org), case.org, registration(HOOK_URL))
    fakes.erasures.erase(case.candidate_id)
    event = application_submitted(case)

    await services.notify_applications_submitted([event], fakes.uow())

    made = fakes.notifications.stored.values()
    assert {n.channel for n in made} == {IN_APP, EMAIL, WEBHOOK}
    personal = [case.name, case.email, event.data.resume_url, event.data.cover_letter]
    for notification in made:
        text = notification.model_dump_json()
        assert not [item for item in personal if item and item in text], notification
    [to_employer] = [n for n in fakes.notifications.of(org_recipient(case.org)) if n.in_app]
    assert to_employer.body == f"{ERASED_NAME} applied (skills match 75%)."
    facts = await fakes.facts.application(case.application_id)
    assert facts is not None
    assert (facts.candidate_name, facts.candidate_email) != (case.name, case.email)
    assert case.email not in json.dumps([e.model_dump(mode="json") for e in fakes.publisher.events])


async def test_a_candidate_erased_while_their_application_was_written_is_anonymised(
    fakes: NotificationsFakes,
) -> None:
    case = new_case()
    await announced(fakes, case)
    fakes.erasures.erase(case.candidate_id, after_looks=fakes.erasures.looks + 1)

    await services.notify_applications_submitted([application_submitted(case)], fakes.uow())

    candidate = fakes.notifications.of(user_recipient(case.candidate_id))
    assert [(n.channel, n.email) for n in candidate] == [(IN_APP, None), (EMAIL, None)]
    employer = fakes.notifications.of(org_recipient(case.org))
    assert {n.body for n in employer} == {ANONYMOUS_BODY}
    facts = await fakes.facts.application(case.application_id)
    assert facts is not None
    assert facts.candidate_name == ERASED_NAME


# ----------------------------------------------------------------- application.status_changed


async def submitted(fakes: NotificationsFakes, case: Case) -> None:
    """The case's posting announced and its application handled; nothing recorded of it."""
    await announced(fakes, case)
    await services.notify_applications_submitted([application_submitted(case)], fakes.uow())
    fakes.notifications.stored.clear()


async def test_a_status_change_tells_the_candidate_in_app_and_by_email_and_not_the_employer(
    fakes: NotificationsFakes,
) -> None:
    case = new_case()
    await submitted(fakes, case)

    await services.notify_status_changed(
        status_changed(case, ApplicationStatus.SCREENING), fakes.uow()
    )

    candidate = user_recipient(case.candidate_id)
    assert fakes.routes() == {(candidate, IN_APP, None), (candidate, EMAIL, case.email)}
    assert {n.title for n in fakes.notifications.stored.values()} == {
        f"Your application for {case.title}: screening"
    }


async def test_a_withdrawal_also_tells_the_employer_in_app_and_at_the_contact_address(
    fakes: NotificationsFakes,
) -> None:
    case = new_case("Jean Bartik")
    await submitted(fakes, case)

    await services.notify_status_changed(
        status_changed(case, ApplicationStatus.WITHDRAWN), fakes.uow()
    )

    employer = fakes.notifications.of(org_recipient(case.org))
    assert {(n.channel, n.email) for n in employer} == {
        (IN_APP, None),
        (EMAIL, case.contact_email),
    }
    assert {(n.title, n.body) for n in employer} == {
        (f"Application withdrawn: {case.title}", "Jean Bartik withdrew their application.")
    }


async def test_without_the_applications_facts_the_candidate_is_told_in_app_only(
    fakes: NotificationsFakes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(services, "FACTS_PATIENCE_STEP_S", 0)
    case = new_case()

    await services.notify_status_changed(
        status_changed(case, ApplicationStatus.WITHDRAWN), fakes.uow()
    )

    assert fakes.facts.lookups == services.FACTS_PATIENCE_ROUNDS  # it waited for them
    assert fakes.routes() == {
        (user_recipient(case.candidate_id), IN_APP, None),
        (org_recipient(case.org), IN_APP, None),
    }
    [to_employer] = fakes.notifications.of(org_recipient(case.org))
    assert to_employer.body == "A candidate withdrew their application."


async def test_facts_that_arrive_while_a_status_change_waits_are_used(
    fakes: NotificationsFakes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(services, "FACTS_PATIENCE_STEP_S", 0)
    case = new_case()
    await submitted(fakes, case)
    facts = fakes.facts.applications.pop(case.application_id)
    fakes.facts.arriving_at_lookup(fakes.facts.lookups + 3, facts)

    await services.notify_status_changed(
        status_changed(case, ApplicationStatus.SCREENING), fakes.uow()
    )

    assert (user_recipient(case.candidate_id), EMAIL, case.email) in fakes.routes()


# ----------------------------------------------------------------------- the unit of work


def made(channel: Channel, event_id: str = "e1") -> Notification:
    """A notification of event `event_id` to one candidate, on `channel`."""
    return stored_notification(
        "user:cand-1",
        "a1",
        channel=channel,
        source_event_id=event_id,
        correlation_id="corr-1",
        email="ada@example.com" if channel is EMAIL else None,
        webhook_id="w1" if channel is WEBHOOK else None,
    )


async def test_commit_stores_each_notification_once_and_counts_the_new(
    fakes: NotificationsFakes,
) -> None:
    first, second, third = made(IN_APP), made(EMAIL), made(IN_APP, "e2")
    uow = fakes.uow()
    uow.add([first, second])
    assert await uow.commit() == 2
    uow.add([first, third])
    assert await uow.commit() == 1
    assert set(fakes.notifications.stored) == {n.notification_id for n in (first, second, third)}


async def test_commit_announces_each_in_app_notification_under_its_derived_event_id(
    fakes: NotificationsFakes,
) -> None:
    in_app = made(IN_APP)
    uow = fakes.uow()
    uow.add([in_app, made(EMAIL)])
    await uow.commit()

    [event] = fakes.publisher.events
    assert event.id == delivered_event_id(in_app.notification_id)
    assert event.type == "notification.delivered"
    assert event.source == "hirestream/notifications"
    assert event.correlationid == "corr-1"
    assert event.time == in_app.created_at
    assert (event.data.outcome, event.data.attempts) == (DeliveryOutcome.DELIVERED, 1)
    assert (event.data.notification_id, event.data.channel) == (in_app.notification_id, IN_APP)


async def test_commit_hands_new_deliveries_to_the_worker_leased_to_it(
    fakes: NotificationsFakes,
) -> None:
    uow = fakes.uow()
    due_at = uow.delivery_due_at()
    assert due_at > utc_now()  # leased: no other worker's poll takes it meanwhile
    email, webhook = made(EMAIL), made(WEBHOOK)
    uow.add([made(IN_APP), email, webhook])
    await uow.commit()
    assert fakes.deliveries.handed == [email, webhook]
    assert fakes.deliveries.wakes == 0


async def test_with_the_workers_queue_full_new_deliveries_are_due_at_once_and_the_worker_woken(
    fakes: NotificationsFakes,
) -> None:
    fakes.deliveries.room = False
    case = new_case()
    before = utc_now()

    await services.notify_applications_submitted([application_submitted(case)], fakes.uow())

    assert fakes.deliveries.handed == []
    assert fakes.deliveries.wakes == 1
    [email] = [n for n in fakes.notifications.stored.values() if n.channel is EMAIL]
    assert email.delivery_due_at is not None
    assert email.delivery_due_at <= utc_now()  # for the poll to find
    assert email.delivery_due_at >= before


async def test_a_commit_with_nothing_new_wakes_nobody(fakes: NotificationsFakes) -> None:
    fakes.deliveries.room = False
    uow = fakes.uow()
    uow.delivery_due_at()
    uow.add([made(EMAIL)])
    await uow.commit()
    uow.add([made(EMAIL)])
    await uow.commit()
    assert fakes.deliveries.wakes == 1

"""The notifications service's MongoDB adapters on the real database server: what the use cases
and the delivery worker rely on, which the in-memory fakes of tests/support/notifications.py
imitate. A notification id is stored once; a delivery's lease is a compare-and-set on its due
time; erasure leaves no address, name or candidate data; alerts are found through their anchor;
webhooks by kind and org; facts and preferences as written.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from hirestream.notifications.domain import (
    AlertCriteria,
    ApplicationFacts,
    DeliveryAttempt,
    DeliveryStatus,
    Preferences,
    org_recipient,
    user_recipient,
)
from hirestream.notifications.store import (
    ALERTS,
    ANONYMOUS_BODY,
    INDEXES,
    NOTIFICATIONS,
    PREFERENCES,
    WEBHOOKS,
    AlertStore,
    FactStore,
    NotificationStore,
    PreferenceStore,
    WebhookStore,
)
from hirestream.shared.events.envelope import serialize
from hirestream.shared.events.notifications import Channel, DeliveryOutcome
from hirestream.shared.events.types import utc_now
from hirestream.shared.privacy import ERASED_EMAIL, ERASED_NAME
from hirestream.shared.storage.mongo import ensure_indexes
from tests.conftest import unique_db
from tests.support.fakes import published
from tests.support.notifications import (
    application_submitted,
    new_case,
    new_id,
    posting_created,
    registration,
    stored_notification,
    tag,
)

pytestmark = pytest.mark.integration

Database = AsyncDatabase[dict[str, Any]]
HOOK_URL = "http://127.0.0.1:9/hooks"


@pytest.fixture(scope="module")
async def db(mongo: AsyncMongoClient[dict[str, Any]]) -> AsyncIterator[Database]:
    database = mongo[unique_db("notifications")]
    await ensure_indexes(database, INDEXES)
    yield database
    await mongo.drop_database(database.name)


# --- notifications and the delivery queue ---------------------------------------------------


async def test_a_notification_is_stored_once_and_a_second_copy_leaves_it_as_it_is(
    db: Database,
) -> None:
    store = NotificationStore(db[NOTIFICATIONS])
    recipient = user_recipient(f"cand-{tag()}")
    first, second = stored_notification(recipient, new_id()), stored_notification(recipient, "x")
    assert await store.create([first]) == ([first], [])
    await store.mark_read(recipient, first.notification_id)

    made, existing = await store.create([first, second])

    assert (made, existing) == ([second], [first.notification_id])
    stored = await store.get_many([first.notification_id, second.notification_id])
    assert stored[first.notification_id].read is True  # not overwritten by the copy
    assert stored[second.notification_id] == second


async def test_only_the_recipients_in_app_notification_is_marked_read(db: Database) -> None:
    store = NotificationStore(db[NOTIFICATIONS])
    recipient, subject = user_recipient(f"cand-{tag()}"), new_id()
    email = stored_notification(recipient, subject, channel=Channel.EMAIL, email="a@example.com")
    item = stored_notification(recipient, subject)
    await store.create([email, item])

    assert await store.mark_read("user:stranger", item.notification_id) is None
    assert await store.mark_read(recipient, email.notification_id) is None
    marked = await store.mark_read(recipient, item.notification_id)
    assert marked is not None
    assert marked.read is True


async def test_a_lease_is_taken_only_from_the_due_time_it_was_read_with(db: Database) -> None:
    store = NotificationStore(db[NOTIFICATIONS])
    due = stored_notification(user_recipient(f"cand-{tag()}"), new_id(), channel=Channel.EMAIL)
    await store.create([due])
    assert due.delivery_due_at is not None
    until = utc_now() + timedelta(minutes=1)

    leased = await store.claim(due.notification_id, due_at=due.delivery_due_at, until=until)
    again = await store.claim(due.notification_id, due_at=due.delivery_due_at, until=until)

    assert leased is not None
    assert leased.delivery_due_at is not None
    assert abs(leased.delivery_due_at - until) < timedelta(milliseconds=1)
    assert again is None  # another worker's compare-and-set loses


async def test_a_poll_claims_the_due_deliveries_oldest_first_and_leases_them(db: Database) -> None:
    store = NotificationStore(db[NOTIFICATIONS])
    recipient, now = user_recipient(f"cand-{tag()}"), utc_now()
    older, newer, later = (
        stored_notification(
            recipient, new_id(), channel=Channel.EMAIL, delivery_due_at=now + timedelta(seconds=s)
        )
        for s in (-20, -10, 600)
    )
    await store.create([newer, later, older])

    claimed = await store.claim_due(now=now, lease=timedelta(minutes=1), limit=100)
    ours = [n.notification_id for n in claimed if n.recipient == recipient]

    assert ours == [older.notification_id, newer.notification_id]
    after = await store.claim_due(now=now, lease=timedelta(minutes=1), limit=100)
    assert [n for n in after if n.recipient == recipient] == []  # leased meanwhile


async def test_attempts_are_recorded_with_the_retry_then_the_outcome_and_its_owed_event(
    db: Database,
) -> None:
    store = NotificationStore(db[NOTIFICATIONS])
    delivery = stored_notification(user_recipient(f"cand-{tag()}"), new_id(), channel=Channel.EMAIL)
    await store.create([delivery])
    retry_at = utc_now() + timedelta(seconds=30)
    failed = DeliveryAttempt(number=1, at=utc_now(), ok=False, error="smtp: refused")
    event = delivery.delivered_event(
        DeliveryOutcome.DELIVERED, attempts=2, at=utc_now(), source="tests"
    )

    await store.record_attempt(
        delivery.notification_id, failed, retry_at=retry_at, final_status=None, owed=[]
    )
    [retrying] = (await store.get_many([delivery.notification_id])).values()
    ok = DeliveryAttempt(number=2, at=utc_now(), ok=True)
    await store.record_attempt(
        delivery.notification_id,
        ok,
        retry_at=None,
        final_status=DeliveryStatus.DELIVERED,
        owed=[event],
    )

    assert retrying.delivery_due_at is not None
    assert abs(retrying.delivery_due_at - retry_at) < timedelta(milliseconds=1)
    assert retrying.status is DeliveryStatus.PENDING
    [done] = (await store.get_many([delivery.notification_id])).values()
    assert (done.status, done.delivery_due_at) == (DeliveryStatus.DELIVERED, None)
    assert [a.ok for a in done.attempts] == [False, True]
    document = await db[NOTIFICATIONS].find_one({"_id": delivery.notification_id})
    assert document is not None
    assert [owed.id for owed in published(document["outbox"])] == [event.id]


async def test_erasure_leaves_no_address_name_or_candidate_data(db: Database) -> None:
    store = NotificationStore(db[NOTIFICATIONS])
    case = new_case(f"Grace Hopper {tag()}")
    event = application_submitted(case)
    candidate, employer = user_recipient(case.candidate_id), org_recipient(case.org)
    app = case.application_id
    await store.create(
        [
            stored_notification(candidate, app, channel=Channel.EMAIL, email=case.email),
            stored_notification(employer, app, body=f"{case.name} applied (skills match 75%)."),
            stored_notification(
                f"webhook:{new_id()}", app, channel=Channel.WEBHOOK, payload=serialize(event)
            ),
        ]
    )

    assert await store.anonymise_candidate(case.candidate_id, [app]) == 3
    assert await store.anonymise_candidate(case.candidate_id, [app]) == 0  # idempotent

    left = json.dumps(await db[NOTIFICATIONS].find({"subject": app}).to_list(), default=str)
    for personal in (case.name, case.email, event.data.resume_url, event.data.cover_letter or ""):
        assert personal not in left
    assert ANONYMOUS_BODY in left


# --- alerts, webhooks, facts, preferences ----------------------------------------------------


async def test_a_posting_finds_exactly_the_alerts_it_matches_whatever_their_anchor(
    db: Database,
) -> None:
    store = AlertStore(db[ALERTS])
    ada, grace = f"cand-{tag()}", f"cand-{tag()}"
    city = f"Lisbon{tag()}"  # no other test's alert anchors here
    by_city = await store.create(ada, AlertCriteria(city=city, skills=["python"]))
    by_skill = await store.create(ada, AlertCriteria(skills=["kafka"], country="PT"))
    by_word = await store.create(grace, AlertCriteria(q="Platform"))
    await store.create(grace, AlertCriteria(city=city, skills=["rust"]))
    await store.create(grace, AlertCriteria(city=f"Porto{tag()}"))
    posting = posting_created(
        new_id(),
        "acme",
        title="Platform Engineer",
        location={"city": city, "country": "PT"},
        skills=["python", "kafka"],
    ).data

    found = {a.alert_id for a in await store.matching(posting) if a.candidate_id in (ada, grace)}

    assert found == {by_city.alert_id, by_skill.alert_id, by_word.alert_id}


async def test_an_alert_is_deleted_by_its_candidate_only(db: Database) -> None:
    store = AlertStore(db[ALERTS])
    owner = f"cand-{tag()}"
    alert = await store.create(owner, AlertCriteria(city="Lisbon"))
    assert await store.delete(f"cand-{tag()}", alert.alert_id) is False
    assert await store.delete(owner, "not-an-object-id") is False
    assert await store.delete(owner, alert.alert_id) is True
    assert (await store.of_candidate(owner, limit=10, cursor=None)).items == []


async def test_an_event_goes_to_the_orgs_webhooks_for_its_kind_and_to_the_admins(
    db: Database,
) -> None:
    store = WebhookStore(db[WEBHOOKS])
    org, other = f"acme-{tag()}", f"globex-{tag()}"
    ours = await store.create(org_recipient(org), org, registration(HOOK_URL))
    await store.create(org_recipient(org), org, registration(HOOK_URL, "posting.created"))
    await store.create(org_recipient(other), other, registration(HOOK_URL))
    admins = await store.create("user:admin-1", None, registration(HOOK_URL))

    found = {w.webhook_id for w in await store.subscribed("application.submitted", {org})}

    assert {ours.webhook_id, admins.webhook_id} <= found
    assert {w.org for w in await store.subscribed("application.submitted", {org})} <= {org, None}
    assert await store.get(org_recipient(other), ours.webhook_id) is None
    assert await store.by_id(ours.webhook_id) == ours


async def test_facts_are_remembered_once_and_blanked_by_erasure(db: Database) -> None:
    facts = FactStore(db)
    case = new_case()
    posting = posting_created(case.posting_id, case.org, title="Data Engineer").data
    assert await facts.remember_posting("e1", posting) is True
    renamed = posting_created(case.posting_id, case.org, title="Renamed").data
    assert await facts.remember_posting("e2", renamed) is False
    [announced] = (await facts.postings_by_id({case.posting_id})).values()
    assert announced.title == "Data Engineer"

    seen = ApplicationFacts(
        case.application_id,
        case.candidate_id,
        case.name,
        case.email,
        case.posting_id,
        "Data Engineer",
        case.org,
        case.contact_email,
    )
    await facts.remember_applications([seen])
    await facts.remember_applications([seen])  # a redelivered batch
    assert await facts.application(case.application_id) == seen

    assert await facts.anonymise_candidate(case.candidate_id) == [case.application_id]
    erased = await facts.application(case.application_id)
    assert erased is not None
    assert (erased.candidate_name, erased.candidate_email) == (ERASED_NAME, ERASED_EMAIL)


async def test_preferences_are_read_back_as_chosen_and_only_for_those_who_chose(
    db: Database,
) -> None:
    store = PreferenceStore(db[PREFERENCES])
    chooser, other = user_recipient(f"cand-{tag()}"), user_recipient(f"cand-{tag()}")
    chosen = Preferences(
        channels={"posting.created": [Channel.IN_APP], "application.submitted": []}
    )
    await store.put(chooser, chosen)
    assert await store.get_many([chooser, other]) == {chooser: chosen}
    assert await store.get(other) == Preferences()

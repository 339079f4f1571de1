"""The notifications consumer on the real broker, database and SMTP catcher: events published on
Kafka become inbox items, emails and `notification.delivered` events, each exactly once.

Each recipient gets one notification per event even when the event is published three times; a
job alert matches and a non-matching one does not; a redelivered `posting.created` is recorded
once; poison values land in the dead-letter topic and the consumer goes on. Who is told what
is tested without servers in tests/unit/notifications; here, that the consumer, the stores
and the mailer do it on the real servers.

Scenarios whose tests assert that something did NOT happen (a second item, email or event)
are all set off first, then left to settle once (`settled`), rather than each waiting alone.
Every test works with candidates, orgs, postings and applications of its own, so what other
tests publish never shows up in its assertions.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from hirestream.shared.events.applications import ApplicationStatus, ApplicationSubmitted
from hirestream.shared.events.envelope import CloudEvent
from hirestream.shared.events.postings import PostingCreated
from tests.conftest import bearer, unique_db
from tests.support.kafka import Record, produce, read_until
from tests.support.notifications import (
    Case,
    alert_body,
    announce_posting,
    application_submitted,
    delivered_about,
    inbox,
    mails_to,
    new_case,
    new_id,
    posting_created,
    publish,
    read_delivered,
    running_notifications,
    save_alert,
    status_changed,
    tag,
    wait_for_delivered,
    wait_for_inbox,
    wait_for_mail,
)
from tests.support.polling import eventually
from tests.support.servers import Servers

pytestmark = pytest.mark.integration

# Longer than the outbox's inline grace (5 s), after which its sweep would publish again
# anything left behind, and than a redelivered record takes to be handled: a duplicate, if
# there is one, has shown up by then.
SETTLE_S = 6.0

Json = dict[str, Any]


@pytest.fixture(scope="module")
def notifications_db() -> str:
    return unique_db("notifications")


@pytest.fixture(scope="module")
async def notifications(
    base_env: dict[str, str], notifications_db: str
) -> AsyncIterator[httpx.AsyncClient]:
    async for client in running_notifications(base_env, notifications_db):
        yield client


# --- scenarios that settle together --------------------------------------------------------


@dataclass(frozen=True)
class Published:
    case: Case
    event: CloudEvent[ApplicationSubmitted]


@pytest.fixture(scope="module")
async def published_three_times(
    notifications: httpx.AsyncClient,
    servers: Servers,
    mongo: AsyncMongoClient[Json],
    notifications_db: str,
) -> Published:
    """application.submitted published three times with the same event id (a producer's
    retries), after the posting with a contact email was announced."""
    case = new_case("Grace Hopper")
    await announce_posting(servers, mongo, notifications_db, case)
    event = application_submitted(case)
    for _ in range(3):
        await publish(servers, event)
    await wait_for_inbox(notifications, case.candidate, case.application_id)
    await wait_for_inbox(notifications, case.employer, case.application_id)
    await wait_for_mail(servers, case.email)
    await wait_for_mail(servers, case.contact_email)
    await wait_for_delivered(servers, event.id, expected=4)
    return Published(case, event)


@dataclass(frozen=True)
class AlertedCandidate:
    candidate_id: str
    address: str
    matching: str  # the posting id that matches

    @property
    def headers(self) -> dict[str, str]:
        return bearer("candidate", sub=self.candidate_id)


@pytest.fixture(scope="module")
async def alert_and_three_postings(
    notifications: httpx.AsyncClient, servers: Servers
) -> AlertedCandidate:
    """An alert for Python and Kafka in Valencia; a posting in another city, one missing a
    skill, then a matching one (the control: the consumer got past the two others)."""
    candidate_id, address = f"cand-{tag()}", f"ada+{tag()}@example.com"
    await save_alert(notifications, candidate_id, alert_body("Valencia", email=address))
    org, matching = f"acme-{tag()}", new_id()
    valencia = {"city": "Valencia", "country": "ES"}
    madrid = {"city": "Madrid", "country": "ES"}
    for posting_id, location, skills in [
        (new_id(), madrid, ["python", "kafka"]),
        (new_id(), valencia, ["python", "rust"]),
        (matching, valencia, ["python", "kafka"]),
    ]:
        await publish(servers, posting_created(posting_id, org, location=location, skills=skills))
    alerted = AlertedCandidate(candidate_id, address, matching)
    await wait_for_inbox(notifications, alerted.headers, matching)
    return alerted


@pytest.fixture(scope="module")
async def two_matching_alerts(
    notifications: httpx.AsyncClient, servers: Servers
) -> AlertedCandidate:
    """Two alerts of one candidate (anchored on a city and on a skill) match one posting."""
    candidate_id, address = f"cand-{tag()}", f"ada+{tag()}@example.com"
    await save_alert(notifications, candidate_id, alert_body("Dublin", email=address))
    await save_alert(notifications, candidate_id, {"skills": ["kafka"], "country": "IE"})
    posting_id = new_id()
    dublin = {"city": "Dublin", "country": "IE"}
    await publish(servers, posting_created(posting_id, f"acme-{tag()}", location=dublin))
    alerted = AlertedCandidate(candidate_id, address, posting_id)
    await wait_for_inbox(notifications, alerted.headers, posting_id)
    await wait_for_mail(servers, address)
    return alerted


@pytest.fixture(scope="module")
async def email_turned_off(
    notifications: httpx.AsyncClient,
    servers: Servers,
    mongo: AsyncMongoClient[Json],
    notifications_db: str,
) -> Case:
    """A candidate who chose in-app only for applications applies."""
    case = new_case("Katherine Johnson")
    put = await notifications.put(
        "/preferences",
        json={"channels": {"application.submitted": ["in_app"]}},
        headers=case.candidate,
    )
    assert put.status_code == 200, put.text
    await announce_posting(servers, mongo, notifications_db, case)
    await publish(servers, application_submitted(case))
    await wait_for_inbox(notifications, case.candidate, case.application_id)
    # The control: the employer's email for the same event was sent.
    await wait_for_mail(servers, case.contact_email)
    return case


@pytest.fixture(scope="module")
async def posting_published_twice(
    notifications: httpx.AsyncClient,
    servers: Servers,
    mongo: AsyncMongoClient[Json],
    notifications_db: str,
) -> CloudEvent[PostingCreated]:
    """posting.created published twice, as a producer retry after a lost acknowledgement."""
    event = posting_created(new_id(), f"acme-{tag()}", title="Data Engineer")
    for _ in range(2):
        await publish(servers, event)
    announced = mongo[notifications_db]["announced_postings"]
    await eventually(lambda: announced.find_one({"_id": event.data.posting_id}))
    return event


@pytest.fixture(scope="module")
async def settled(
    servers: Servers,
    published_three_times: Published,
    alert_and_three_postings: AlertedCandidate,
    two_matching_alerts: AlertedCandidate,
    email_turned_off: Case,
    posting_published_twice: CloudEvent[PostingCreated],
) -> list[Record]:
    """Once every scenario above made what it should: the `notification.delivered` topic,
    read for as long as a duplicate or a stray email would take to show."""
    return await read_delivered(servers, settle_s=SETTLE_S)


# --- one notification per event and recipient, whatever the redeliveries -----------------


async def test_the_candidate_inbox_has_one_item_for_a_thrice_published_event(
    notifications: httpx.AsyncClient, published_three_times: Published, settled: list[Record]
) -> None:
    case = published_three_times.case
    items = await inbox(notifications, case.candidate, case.application_id)
    assert len(items) == 1
    assert items[0]["kind"] == "application.submitted"
    assert items[0]["title"] == f"Application sent: {case.title}"
    assert items[0]["read"] is False


async def test_the_employer_org_inbox_has_one_item_for_a_thrice_published_event(
    notifications: httpx.AsyncClient, published_three_times: Published, settled: list[Record]
) -> None:
    case = published_three_times.case
    items = await inbox(notifications, case.employer, case.application_id)
    assert len(items) == 1
    assert items[0]["title"] == f"New applicant for {case.title}"
    assert items[0]["body"] == "Grace Hopper applied (skills match 75%)."


async def test_the_candidate_gets_one_email_for_a_thrice_published_event(
    servers: Servers, published_three_times: Published, settled: list[Record]
) -> None:
    case = published_three_times.case
    mails = mails_to(servers, case.email)
    assert len(mails) == 1
    assert mails[0]["Subject"] == f"Application sent: {case.title}"
    assert mails[0]["To"] == case.email


async def test_the_postings_contact_email_gets_one_email_for_a_thrice_published_event(
    servers: Servers, published_three_times: Published, settled: list[Record]
) -> None:
    case = published_three_times.case
    mails = mails_to(servers, case.contact_email)
    assert len(mails) == 1
    assert mails[0]["Subject"] == f"New applicant for {case.title}"


async def test_one_notification_delivered_event_per_notification_of_a_thrice_published_event(
    published_three_times: Published, settled: list[Record]
) -> None:
    case = published_three_times.case
    delivered = delivered_about(settled, published_three_times.event.id)
    ids = [data["notification_id"] for data in delivered]
    assert len(ids) == len(set(ids)) == 4
    assert {(data["recipient"], data["channel"]) for data in delivered} == {
        (f"user:{case.candidate_id}", "in_app"),
        (f"user:{case.candidate_id}", "email"),
        (f"org:{case.org}", "in_app"),
        (f"org:{case.org}", "email"),
    }
    assert {data["outcome"] for data in delivered} == {"delivered"}
    assert {data["subject"] for data in delivered} == {case.application_id}


async def test_a_redelivered_posting_created_is_recorded_once(
    notifications: httpx.AsyncClient,
    mongo: AsyncMongoClient[Json],
    notifications_db: str,
    posting_published_twice: CloudEvent[PostingCreated],
    settled: list[Record],
) -> None:
    posting_id = posting_published_twice.data.posting_id
    collection = mongo[notifications_db]["announced_postings"]
    assert await collection.count_documents({"_id": posting_id}) == 1
    document = await collection.find_one({"_id": posting_id})
    assert document is not None
    assert document["title"] == "Data Engineer"
    assert (await notifications.get("/readyz")).status_code == 200


# --- job alerts ---------------------------------------------------------------------------


async def test_a_matching_posting_notifies_the_alerts_candidate_in_app_and_by_email(
    notifications: httpx.AsyncClient, servers: Servers
) -> None:
    candidate_id, address = f"cand-{tag()}", f"ada+{tag()}@example.com"
    await save_alert(notifications, candidate_id, alert_body("Porto", email=address))
    posting_id = new_id()
    await publish(
        servers,
        posting_created(
            posting_id,
            f"acme-{tag()}",
            title="Platform Engineer",
            location={"city": "Porto", "country": "PT"},
            skills=["python", "kafka", "kubernetes"],
        ),
    )

    items = await wait_for_inbox(notifications, bearer("candidate", sub=candidate_id), posting_id)
    assert [item["title"] for item in items] == ["New job: Platform Engineer"]
    assert items[0]["kind"] == "posting.created"
    mails = await wait_for_mail(servers, address)
    assert [mail["Subject"] for mail in mails] == ["New job: Platform Engineer"]


async def test_postings_that_do_not_match_the_alert_notify_nobody(
    notifications: httpx.AsyncClient,
    servers: Servers,
    alert_and_three_postings: AlertedCandidate,
    settled: list[Record],
) -> None:
    alerted = alert_and_three_postings
    items = await inbox(notifications, alerted.headers)
    assert {item["subject"] for item in items} == {alerted.matching}
    assert len(mails_to(servers, alerted.address)) == 1


async def test_a_candidate_with_two_matching_alerts_is_notified_once(
    notifications: httpx.AsyncClient,
    servers: Servers,
    two_matching_alerts: AlertedCandidate,
    settled: list[Record],
) -> None:
    alerted = two_matching_alerts
    assert len(await inbox(notifications, alerted.headers, alerted.matching)) == 1
    assert len(mails_to(servers, alerted.address)) == 1


# --- preferences and status changes ----------------------------------------------------------


async def test_email_turned_off_for_applications_sends_no_email_but_keeps_the_inbox_item(
    notifications: httpx.AsyncClient,
    servers: Servers,
    email_turned_off: Case,
    settled: list[Record],
) -> None:
    case = email_turned_off
    assert len(await inbox(notifications, case.candidate, case.application_id)) == 1
    assert mails_to(servers, case.email) == []


async def test_a_status_change_tells_the_candidate_in_app_and_by_email(
    notifications: httpx.AsyncClient,
    servers: Servers,
    mongo: AsyncMongoClient[Json],
    notifications_db: str,
) -> None:
    # A posting without a contact email: the employer wants no email, which is optional.
    case = new_case("Evelyn Boyd Granville")
    await announce_posting(servers, mongo, notifications_db, case, with_contact_email=False)
    await publish(servers, application_submitted(case))
    await wait_for_inbox(notifications, case.candidate, case.application_id)

    await publish(servers, status_changed(case, ApplicationStatus.SCREENING))
    items = await wait_for_inbox(notifications, case.candidate, case.application_id, count=2)
    assert items[0]["kind"] == "application.status_changed"
    assert items[0]["title"] == f"Your application for {case.title}: screening"
    subjects = {str(mail["Subject"]) for mail in await wait_for_mail(servers, case.email)}
    assert f"Your application for {case.title}: screening" in subjects


# --- dead letters -------------------------------------------------------------------------


@dataclass(frozen=True)
class Poisoned:
    key: bytes
    poison: list[bytes]
    case: Case


@pytest.fixture(scope="module")
async def poisoned_partition(notifications: httpx.AsyncClient, servers: Servers) -> Poisoned:
    """Two poison values, then a valid application.submitted, all with one key (so on one
    partition, in this order)."""
    case = new_case("Frances Allen")
    key = case.application_id.encode()
    not_json = b"{not json"
    wrong_schema = json.dumps(
        {
            "specversion": "1.0",
            "id": str(uuid.uuid4()),
            "source": "tests",
            "type": "application.submitted",
            "subject": case.application_id,
            "time": "2026-11-28T12:00:00.000Z",
            "dataschema": "https://hirestream.dev/schemas/application.submitted/1.json",
            "data": {"application_id": case.application_id, "org": case.org},
        }
    ).encode()
    for value in (not_json, wrong_schema):
        await produce(servers.kafka_bootstrap, "application.submitted", value, key=key)
    await publish(servers, application_submitted(case))
    return Poisoned(key, [not_json, wrong_schema], case)


async def test_poison_values_land_in_the_dead_letter_topic(
    servers: Servers, poisoned_partition: Poisoned
) -> None:
    key = poisoned_partition.key
    records = await read_until(
        servers.kafka_bootstrap,
        ["application.submitted.dlq"],
        lambda rs: len([r for r in rs if r.key == key]) >= 2,
    )
    dead = [record for record in records if record.key == key]
    assert [record.value for record in dead] == poisoned_partition.poison
    for record in dead:
        assert record.headers["dlq-consumer-group"] == "notifications"
        assert record.headers["dlq-original-topic"] == "application.submitted"
        assert record.headers["dlq-error"].startswith("invalid event")
        assert record.headers["dlq-attempts"] == "1"
    assert "data.candidate" in dead[1].headers["dlq-error"]


async def test_a_valid_event_after_poison_on_the_same_partition_is_handled(
    notifications: httpx.AsyncClient, poisoned_partition: Poisoned
) -> None:
    case = poisoned_partition.case
    items = await wait_for_inbox(notifications, case.candidate, case.application_id)
    assert [item["kind"] for item in items] == ["application.submitted"]

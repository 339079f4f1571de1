"""Who is told what by the notifications service, on the real broker, database and SMTP
catcher, with a real webhook receiver on 127.0.0.1.

Each recipient gets exactly one notification per event even when the event is published three
times; a job alert matches and a non-matching one does not; a webhook receiver that fails twice
then succeeds gets the signed event once with three recorded attempts; poison values land in
the dead-letter topic and the consumer goes on. Every test works with candidates, orgs,
postings and applications of its own, so what other tests publish never shows up in its
assertions.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from email.message import EmailMessage
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from hirestream.notifications.app import NotificationsSettings, create_app
from hirestream.shared.events.applications import (
    APPLICATION_STATUS_CHANGED,
    APPLICATION_SUBMITTED,
    ApplicationStatus,
    ApplicationStatusChanged,
    ApplicationSubmitted,
    Candidate,
    Match,
)
from hirestream.shared.events.envelope import CloudEvent, serialize
from hirestream.shared.events.postings import POSTING_CREATED, PostingCreated
from hirestream.shared.events.types import utc_now
from tests.conftest import bearer, client_for, http_only_client_for, settings_for, unique_db
from tests.support.factories import snapshot_fields
from tests.support.kafka import Record, produce, read_until
from tests.support.polling import eventually
from tests.support.receivers import WebhookReceiver, signature_verifies, webhook_receiver
from tests.support.servers import Servers

pytestmark = pytest.mark.integration

MAX_ATTEMPTS = 3
# Longer than the outbox's inline grace (5 s), after which its sweep would publish again
# anything left behind, and than a redelivered record takes to be handled: a duplicate, if
# there is one, has shown up by then.
SETTLE_S = 6.0
DEFAULT_CHANNELS = {
    "posting.created": ["email", "in_app"],
    "application.submitted": ["email", "in_app", "webhook"],
    "application.status_changed": ["email", "in_app", "webhook"],
}

Json = dict[str, Any]


# --- the service under test -------------------------------------------------------------


@pytest.fixture(scope="module")
def notifications_db() -> str:
    return unique_db("notifications")


@pytest.fixture(scope="module")
async def notifications(
    base_env: dict[str, str], notifications_db: str
) -> AsyncIterator[httpx.AsyncClient]:
    settings = settings_for(
        NotificationsSettings,
        base_env,
        mongodb_database=notifications_db,
        webhook_allow_private=True,
        delivery_backoff_initial_s=0.2,
        delivery_backoff_max_s=1,
        delivery_max_attempts=MAX_ATTEMPTS,
    )
    async for client in client_for(create_app(settings)):
        yield client


# --- test data --------------------------------------------------------------------------


def new_id() -> str:
    return uuid.uuid4().hex[:24]


def tag() -> str:
    return uuid.uuid4().hex[:8]


@dataclass(frozen=True)
class Case:
    """One candidate applying to one org's posting; ids and addresses unique to a test."""

    candidate_id: str
    name: str
    email: str
    org: str
    posting_id: str
    application_id: str
    contact_email: str
    title: str = "Senior Backend Developer"

    @property
    def candidate(self) -> dict[str, str]:
        return bearer("candidate", sub=self.candidate_id)

    @property
    def employer(self) -> dict[str, str]:
        # Any recruiter of the org: the employer inbox belongs to the org, not to one user.
        return bearer("employer", sub=f"recruiter-{tag()}", org=self.org)


def new_case(name: str = "Ada Lovelace") -> Case:
    suffix = tag()
    org = f"acme-{suffix}"
    return Case(
        candidate_id=f"cand-{suffix}",
        name=name,
        email=f"{name.lower().replace(' ', '.')}+{suffix}@example.com",
        org=org,
        posting_id=new_id(),
        application_id=new_id(),
        contact_email=f"talent+{suffix}@{org}.example",
    )


def posting_created(posting_id: str, org: str, **changes: Any) -> CloudEvent[PostingCreated]:
    data = PostingCreated.model_validate(snapshot_fields(posting_id, 1, org=org, **changes))
    return POSTING_CREATED.new(data, source="tests")


def application_submitted(case: Case) -> CloudEvent[ApplicationSubmitted]:
    data = ApplicationSubmitted(
        application_id=case.application_id,
        posting_id=case.posting_id,
        org=case.org,
        candidate=Candidate(candidate_id=case.candidate_id, name=case.name, email=case.email),
        resume_url=f"https://cv.example.com/{case.candidate_id}.pdf",
        cover_letter="I have run Kafka and MongoDB in production for six years.",
        skills=["python", "kafka", "mongodb"],
        match=Match(
            score=0.75,
            matched_skills=["python", "kafka", "mongodb"],
            missing_skills=["kubernetes"],
        ),
        status=ApplicationStatus.SUBMITTED,
        version=1,
        submitted_at=utc_now(),
    )
    return APPLICATION_SUBMITTED.new(data, source="tests")


def status_changed(case: Case, to_status: ApplicationStatus) -> CloudEvent[Any]:
    withdrawn = to_status is ApplicationStatus.WITHDRAWN
    data = ApplicationStatusChanged(
        application_id=case.application_id,
        posting_id=case.posting_id,
        org=case.org,
        candidate_id=case.candidate_id,
        from_status=ApplicationStatus.SUBMITTED,
        to_status=to_status,
        reason="Found another role" if withdrawn else None,
        changed_by=case.candidate_id if withdrawn else f"recruiter-{tag()}",
        version=2,
        changed_at=utc_now(),
    )
    return APPLICATION_STATUS_CHANGED.new(data, source="tests")


async def publish(servers: Servers, event: CloudEvent[Any]) -> None:
    await produce(servers.kafka_bootstrap, event.type, serialize(event), key=event.subject.encode())


async def announce_posting(
    servers: Servers,
    mongo: AsyncMongoClient[Json],
    db: str,
    case: Case,
    *,
    with_contact_email: bool = True,
) -> None:
    """Publish the case's posting and wait until it was consumed, so that the application
    that follows can name it (and, with a contact email, be told to the employer by email)."""
    contact_email = case.contact_email if with_contact_email else None
    event = posting_created(
        case.posting_id, case.org, title=case.title, contact_email=contact_email
    )
    await publish(servers, event)
    announced = mongo[db]["announced_postings"]
    await eventually(lambda: announced.find_one({"_id": case.posting_id}))


def employer_token(org: str) -> dict[str, str]:
    return bearer("employer", sub=f"recruiter-{tag()}", org=org)


# --- reading what was delivered ------------------------------------------------------------


async def inbox(
    client: httpx.AsyncClient, headers: dict[str, str], subject: str | None = None
) -> list[Json]:
    response = await client.get("/notifications", headers=headers, params={"limit": 100})
    assert response.status_code == 200, response.text
    items: list[Json] = response.json()["items"]
    return [item for item in items if subject is None or item["subject"] == subject]


async def wait_for_inbox(
    client: httpx.AsyncClient, headers: dict[str, str], subject: str, *, count: int = 1
) -> list[Json]:
    async def probe() -> list[Json] | None:
        items = await inbox(client, headers, subject)
        return items if len(items) >= count else None

    try:
        return await eventually(probe, timeout_s=60)
    except TimeoutError:
        seen = [(item["kind"], item["title"]) for item in await inbox(client, headers, subject)]
        raise AssertionError(
            f"expected {count} inbox item(s) about {subject}, saw {seen}"
        ) from None


def mails_to(servers: Servers, address: str) -> list[EmailMessage]:
    """Every message the SMTP catcher stored whose envelope recipients include `address`."""
    assert servers.mail_dir is not None, "these tests read the local stack's SMTP catcher"
    found = []
    for path in sorted(servers.mail_dir.glob("[0-9]*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        recipients = [r.strip() for r in str(message["X-RcptTo"]).split(",")]
        if address in recipients:
            found.append(message)
    return found


async def wait_for_mail(servers: Servers, address: str) -> list[EmailMessage]:
    async def probe() -> list[EmailMessage] | None:
        return mails_to(servers, address) or None

    try:
        return await eventually(probe)
    except TimeoutError:
        raise AssertionError(f"no email reached {address}") from None


def delivered_about(records: list[Record], source_event_id: str) -> list[Json]:
    """The `data` of every notification.delivered event that reports on `source_event_id`,
    each event once: as the contract says, a consumer deduplicates on the event id. Copies
    (a redelivered source event announces its in-app notifications again) must be identical."""
    events: dict[str, Json] = {}
    for record in records:
        event = record.json()
        if event["data"]["source_event_id"] != source_event_id:
            continue
        assert events.setdefault(event["id"], event) == event, "two copies of an event differ"
    return [event["data"] for event in events.values()]


async def settled_deliveries(
    servers: Servers, source_event_id: str, *, expected: int
) -> list[Json]:
    """Every notification.delivered about one event: read until `expected` are there, then
    read the whole topic again for as long as a duplicate would take to show."""
    await read_until(
        servers.kafka_bootstrap,
        ["notification.delivered"],
        lambda records: len(delivered_about(records, source_event_id)) >= expected,
    )
    records = await read_until(
        servers.kafka_bootstrap, ["notification.delivered"], lambda _: False, timeout_s=SETTLE_S
    )
    return delivered_about(records, source_event_id)


def problem(response: httpx.Response, status: int) -> Json:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: Json = response.json()
    assert body["status"] == status
    return body


def page_items(response: httpx.Response) -> list[Json]:
    """The items of a list response, which CONTRACT.md shapes as a cursor page."""
    assert response.status_code == 200, response.text
    body = response.json()
    assert isinstance(body, dict), f"a list must answer {{items, next_cursor}}, got {body!r}"
    assert set(body) == {"items", "next_cursor"}
    items: list[Json] = body["items"]
    return items


# --- SSRF: with private targets not allowed -----------------------------------------------
# First in the module on purpose: this app joins the "notifications" consumer group too, and
# runs before (not beside) the module's app, so it never takes partitions away from it.


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/hooks", "https://127.0.0.1/hooks"])
async def test_a_loopback_webhook_url_is_refused_when_private_targets_are_not_allowed(
    base_env: dict[str, str], url: str
) -> None:
    settings = settings_for(
        NotificationsSettings,
        base_env,
        mongodb_database=unique_db("notifications"),
        webhook_allow_private=False,
    )
    async for strict in http_only_client_for(create_app(settings)):
        response = await strict.post(
            "/webhooks",
            json={
                "url": url,
                "event_types": ["application.submitted"],
                "secret": "whsec-3f9a1c7e5b2d4f60",
            },
            headers=employer_token(f"acme-{tag()}"),
        )
        body = problem(response, 422)
        assert [error["field"] for error in body["errors"]] == ["url"]


# --- one notification per event and recipient, whatever the redeliveries -----------------


@dataclass(frozen=True)
class Published:
    case: Case
    event: CloudEvent[ApplicationSubmitted]
    delivered: list[Json]


@pytest.fixture(scope="module")
async def published_three_times(
    notifications: httpx.AsyncClient,
    servers: Servers,
    mongo: AsyncMongoClient[Json],
    notifications_db: str,
) -> Published:
    """application.submitted published three times with the same event id (a producer's
    retries), after the posting with a contact email was announced; waited until settled."""
    case = new_case("Grace Hopper")
    await announce_posting(servers, mongo, notifications_db, case)
    event = application_submitted(case)
    for _ in range(3):
        await publish(servers, event)
    await wait_for_inbox(notifications, case.candidate, case.application_id)
    await wait_for_inbox(notifications, case.employer, case.application_id)
    await wait_for_mail(servers, case.email)
    await wait_for_mail(servers, case.contact_email)
    delivered = await settled_deliveries(servers, event.id, expected=4)
    return Published(case, event, delivered)


async def test_the_candidate_inbox_has_one_item_for_a_thrice_published_event(
    notifications: httpx.AsyncClient, published_three_times: Published
) -> None:
    case = published_three_times.case
    items = await inbox(notifications, case.candidate, case.application_id)
    assert len(items) == 1
    assert items[0]["kind"] == "application.submitted"
    assert items[0]["title"] == f"Application sent: {case.title}"
    assert items[0]["read"] is False


async def test_the_employer_org_inbox_has_one_item_for_a_thrice_published_event(
    notifications: httpx.AsyncClient, published_three_times: Published
) -> None:
    case = published_three_times.case
    items = await inbox(notifications, case.employer, case.application_id)
    assert len(items) == 1
    assert items[0]["title"] == f"New applicant for {case.title}"
    assert items[0]["body"] == "Grace Hopper applied (skills match 75%)."


async def test_the_candidate_gets_one_email_for_a_thrice_published_event(
    servers: Servers, published_three_times: Published
) -> None:
    case = published_three_times.case
    mails = mails_to(servers, case.email)
    assert len(mails) == 1
    assert mails[0]["Subject"] == f"Application sent: {case.title}"
    assert mails[0]["To"] == case.email


async def test_the_postings_contact_email_gets_one_email_for_a_thrice_published_event(
    servers: Servers, published_three_times: Published
) -> None:
    case = published_three_times.case
    mails = mails_to(servers, case.contact_email)
    assert len(mails) == 1
    assert mails[0]["Subject"] == f"New applicant for {case.title}"


async def test_one_notification_delivered_event_per_notification_of_a_thrice_published_event(
    published_three_times: Published,
) -> None:
    case, delivered = published_three_times.case, published_three_times.delivered
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


# --- job alerts ---------------------------------------------------------------------------


def alert_body(city: str, **changes: Any) -> Json:
    body: Json = {"skills": ["Python", "Kafka"], "city": city}
    body.update(changes)
    return body


async def save_alert(client: httpx.AsyncClient, candidate_id: str, body: Json) -> Json:
    response = await client.post(
        "/alerts", json=body, headers=bearer("candidate", sub=candidate_id)
    )
    assert response.status_code == 201, response.text
    alert: Json = response.json()
    return alert


async def test_a_candidate_saves_a_job_alert(notifications: httpx.AsyncClient) -> None:
    candidate_id = f"cand-{tag()}"
    response = await notifications.post(
        "/alerts",
        json=alert_body("Lisbon", email=f"ada+{tag()}@example.com"),
        headers=bearer("candidate", sub=candidate_id),
    )
    assert response.status_code == 201, response.text
    alert = response.json()
    assert alert["skills"] == ["python", "kafka"]
    assert alert["city"] == "Lisbon"
    assert response.headers["location"] == f"/alerts/{alert['alert_id']}"


async def test_saved_alerts_are_listed(notifications: httpx.AsyncClient) -> None:
    candidate_id = f"cand-{tag()}"
    alert = await save_alert(notifications, candidate_id, alert_body("Lisbon"))
    response = await notifications.get("/alerts", headers=bearer("candidate", sub=candidate_id))
    assert [item["alert_id"] for item in page_items(response)] == [alert["alert_id"]]


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
    notifications: httpx.AsyncClient, servers: Servers
) -> None:
    candidate_id, address = f"cand-{tag()}", f"ada+{tag()}@example.com"
    candidate = bearer("candidate", sub=candidate_id)
    await save_alert(notifications, candidate_id, alert_body("Valencia", email=address))
    org = f"acme-{tag()}"
    other_city, missing_skill, matching = new_id(), new_id(), new_id()
    valencia = {"city": "Valencia", "country": "ES"}
    await publish(
        servers,
        posting_created(
            other_city,
            org,
            location={"city": "Madrid", "country": "ES"},
            skills=["python", "kafka"],
        ),
    )
    await publish(
        servers, posting_created(missing_skill, org, location=valencia, skills=["python", "rust"])
    )
    # The control: a matching posting shows the consumer got past the two others.
    await publish(
        servers, posting_created(matching, org, location=valencia, skills=["python", "kafka"])
    )
    await wait_for_inbox(notifications, candidate, matching)
    await asyncio.sleep(SETTLE_S)

    assert {item["subject"] for item in await inbox(notifications, candidate)} == {matching}
    assert len(mails_to(servers, address)) == 1


async def test_a_candidate_with_two_matching_alerts_is_notified_once(
    notifications: httpx.AsyncClient, servers: Servers
) -> None:
    candidate_id, address = f"cand-{tag()}", f"ada+{tag()}@example.com"
    candidate = bearer("candidate", sub=candidate_id)
    await save_alert(notifications, candidate_id, alert_body("Dublin", email=address))
    await save_alert(notifications, candidate_id, {"skills": ["kafka"], "country": "IE"})
    posting_id = new_id()
    await publish(
        servers,
        posting_created(posting_id, f"acme-{tag()}", location={"city": "Dublin", "country": "IE"}),
    )
    await wait_for_inbox(notifications, candidate, posting_id)
    await wait_for_mail(servers, address)
    await asyncio.sleep(SETTLE_S)

    assert len(await inbox(notifications, candidate, posting_id)) == 1
    assert len(mails_to(servers, address)) == 1


async def test_deleting_an_alert_answers_204_then_404(notifications: httpx.AsyncClient) -> None:
    candidate_id = f"cand-{tag()}"
    alert = await save_alert(notifications, candidate_id, alert_body("Lisbon"))
    candidate = bearer("candidate", sub=candidate_id)
    first = await notifications.delete(f"/alerts/{alert['alert_id']}", headers=candidate)
    assert first.status_code == 204
    second = await notifications.delete(f"/alerts/{alert['alert_id']}", headers=candidate)
    problem(second, 404)


async def test_a_candidate_cannot_delete_someone_elses_alert(
    notifications: httpx.AsyncClient,
) -> None:
    alert = await save_alert(notifications, f"cand-{tag()}", alert_body("Lisbon"))
    response = await notifications.delete(
        f"/alerts/{alert['alert_id']}", headers=bearer("candidate", sub=f"cand-{tag()}")
    )
    problem(response, 404)


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/alerts"), ("GET", "/alerts"), ("DELETE", "/alerts/6650f1c2e4b0a1b2c3d4e5f6")],
)
async def test_employers_cannot_use_job_alerts(
    notifications: httpx.AsyncClient, method: str, path: str
) -> None:
    body = alert_body("Lisbon") if method == "POST" else None
    response = await notifications.request(
        method, path, json=body, headers=employer_token(f"acme-{tag()}")
    )
    problem(response, 403)


# --- preferences -------------------------------------------------------------------------


async def test_preferences_default_to_every_channel_of_each_kind(
    notifications: httpx.AsyncClient,
) -> None:
    response = await notifications.get(
        "/preferences", headers=bearer("candidate", sub=f"cand-{tag()}")
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"channels": DEFAULT_CHANNELS}


async def test_chosen_preferences_are_kept(notifications: httpx.AsyncClient) -> None:
    candidate = bearer("candidate", sub=f"cand-{tag()}")
    chosen = {"channels": {"posting.created": ["in_app"], "application.status_changed": []}}
    put = await notifications.put("/preferences", json=chosen, headers=candidate)
    assert put.status_code == 200, put.text
    expected = {
        **DEFAULT_CHANNELS,
        "posting.created": ["in_app"],
        "application.status_changed": [],
    }
    assert put.json() == {"channels": expected}
    got = await notifications.get("/preferences", headers=candidate)
    assert got.json() == {"channels": expected}


async def test_email_turned_off_for_applications_sends_no_email_but_keeps_the_inbox_item(
    notifications: httpx.AsyncClient,
    servers: Servers,
    mongo: AsyncMongoClient[Json],
    notifications_db: str,
) -> None:
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
    await asyncio.sleep(SETTLE_S)

    assert mails_to(servers, case.email) == []


async def test_preferences_for_an_unknown_event_kind_are_refused(
    notifications: httpx.AsyncClient,
) -> None:
    response = await notifications.put(
        "/preferences",
        json={"channels": {"posting.deleted": ["email"]}},
        headers=bearer("candidate", sub=f"cand-{tag()}"),
    )
    body = problem(response, 422)
    assert [error["field"] for error in body["errors"]] == ["channels"]


# --- status changes -----------------------------------------------------------------------


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


async def test_a_withdrawal_tells_the_employer_org(
    notifications: httpx.AsyncClient,
    servers: Servers,
    mongo: AsyncMongoClient[Json],
    notifications_db: str,
) -> None:
    case = new_case("Jean Bartik")
    await announce_posting(servers, mongo, notifications_db, case)
    await publish(servers, application_submitted(case))
    await wait_for_inbox(notifications, case.employer, case.application_id)

    await publish(servers, status_changed(case, ApplicationStatus.WITHDRAWN))
    items = await wait_for_inbox(notifications, case.employer, case.application_id, count=2)
    assert items[0]["kind"] == "application.status_changed"
    assert items[0]["title"] == f"Application withdrawn: {case.title}"
    assert items[0]["body"] == "Jean Bartik withdrew their application."


# --- the inbox ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def two_in_the_inbox(notifications: httpx.AsyncClient, servers: Servers) -> list[Case]:
    """A candidate told of an application, then (a moment later) of a second one."""
    first = new_case("Dorothy Vaughan")
    second = replace(first, posting_id=new_id(), application_id=new_id())
    for case in (first, second):
        await publish(servers, application_submitted(case))
        await wait_for_inbox(notifications, case.candidate, case.application_id)
    return [first, second]


async def test_the_inbox_lists_the_newest_first(
    notifications: httpx.AsyncClient, two_in_the_inbox: list[Case]
) -> None:
    first, second = two_in_the_inbox
    items = await inbox(notifications, first.candidate)
    assert [item["subject"] for item in items] == [second.application_id, first.application_id]
    assert items[0]["created_at"] > items[1]["created_at"]


async def test_the_inbox_pages_with_its_cursor(
    notifications: httpx.AsyncClient, two_in_the_inbox: list[Case]
) -> None:
    first, second = two_in_the_inbox
    one = await notifications.get("/notifications", params={"limit": 1}, headers=first.candidate)
    assert one.status_code == 200, one.text
    cursor = one.json()["next_cursor"]
    assert cursor is not None
    two = await notifications.get(
        "/notifications", params={"limit": 1, "cursor": cursor}, headers=first.candidate
    )
    assert two.status_code == 200, two.text
    assert [item["subject"] for item in one.json()["items"] + two.json()["items"]] == [
        second.application_id,
        first.application_id,
    ]
    assert two.json()["next_cursor"] is None


async def test_marking_a_notification_read(
    notifications: httpx.AsyncClient, servers: Servers
) -> None:
    case = new_case("Mary Jackson")
    await publish(servers, application_submitted(case))
    [item] = await wait_for_inbox(notifications, case.candidate, case.application_id)

    response = await notifications.post(
        f"/notifications/{item['notification_id']}/read", headers=case.candidate
    )
    assert response.status_code == 200, response.text
    assert response.json()["read"] is True
    assert response.json()["notification_id"] == item["notification_id"]
    [again] = await inbox(notifications, case.candidate, case.application_id)
    assert again["read"] is True


async def test_someone_elses_notification_cannot_be_marked_read(
    notifications: httpx.AsyncClient, servers: Servers
) -> None:
    case = new_case("Annie Easley")
    await publish(servers, application_submitted(case))
    [item] = await wait_for_inbox(notifications, case.candidate, case.application_id)

    stranger = bearer("candidate", sub=f"cand-{tag()}")
    response = await notifications.post(
        f"/notifications/{item['notification_id']}/read", headers=stranger
    )
    problem(response, 404)
    [unchanged] = await inbox(notifications, case.candidate, case.application_id)
    assert unchanged["read"] is False


# --- webhooks -----------------------------------------------------------------------------


def new_secret() -> str:
    return f"whsec-{uuid.uuid4().hex}"


async def register_webhook(client: httpx.AsyncClient, org: str, receiver: WebhookReceiver) -> Json:
    response = await client.post(
        "/webhooks",
        json={
            "url": receiver.url,
            "event_types": ["application.submitted"],
            "secret": receiver.secret,
        },
        headers=employer_token(org),
    )
    assert response.status_code == 201, response.text
    webhook: Json = response.json()
    return webhook


async def deliveries(client: httpx.AsyncClient, org: str, webhook_id: str) -> list[Json]:
    response = await client.get(f"/webhooks/{webhook_id}/deliveries", headers=employer_token(org))
    assert response.status_code == 200, response.text
    items: list[Json] = response.json()["items"]
    return items


async def wait_for_final_delivery(client: httpx.AsyncClient, org: str, webhook_id: str) -> Json:
    async def probe() -> Json | None:
        final = [d for d in await deliveries(client, org, webhook_id) if d["status"] != "pending"]
        return final[0] if final else None

    return await eventually(probe)


async def test_registering_a_webhook_answers_201_without_the_secret(
    notifications: httpx.AsyncClient,
) -> None:
    secret, org = new_secret(), f"acme-{tag()}"
    response = await notifications.post(
        "/webhooks",
        json={
            "url": "http://127.0.0.1:8080/hooks/hirestream",
            "event_types": ["application.submitted"],
            "secret": secret,
        },
        headers=employer_token(org),
    )
    assert response.status_code == 201, response.text
    webhook = response.json()
    assert "secret" not in webhook
    assert secret not in response.text
    assert webhook["url"] == "http://127.0.0.1:8080/hooks/hirestream"
    assert webhook["event_types"] == ["application.submitted"]
    assert response.headers["location"] == f"/webhooks/{webhook['webhook_id']}"


async def test_an_orgs_webhooks_are_listed(notifications: httpx.AsyncClient) -> None:
    org = f"acme-{tag()}"
    async with webhook_receiver(new_secret()) as receiver:
        webhook = await register_webhook(notifications, org, receiver)
    response = await notifications.get("/webhooks", headers=employer_token(org))
    listed = page_items(response)
    assert [item["webhook_id"] for item in listed] == [webhook["webhook_id"]]
    assert "secret" not in listed[0]


async def test_deleting_a_webhook_answers_204_then_404(notifications: httpx.AsyncClient) -> None:
    org = f"acme-{tag()}"
    async with webhook_receiver(new_secret()) as receiver:
        webhook = await register_webhook(notifications, org, receiver)
    path = f"/webhooks/{webhook['webhook_id']}"
    assert (await notifications.delete(path, headers=employer_token(org))).status_code == 204
    problem(await notifications.delete(path, headers=employer_token(org)), 404)


async def test_a_candidate_cannot_register_a_webhook(notifications: httpx.AsyncClient) -> None:
    response = await notifications.post(
        "/webhooks",
        json={
            "url": "http://127.0.0.1:8080/hooks/hirestream",
            "event_types": ["application.submitted"],
            "secret": new_secret(),
        },
        headers=bearer("candidate", sub=f"cand-{tag()}"),
    )
    problem(response, 403)


@dataclass(frozen=True)
class FlakyDelivery:
    case: Case
    event: CloudEvent[ApplicationSubmitted]
    receiver: WebhookReceiver
    webhook_id: str
    delivery: Json


@pytest.fixture(scope="module")
async def failed_twice_then_delivered(
    notifications: httpx.AsyncClient, servers: Servers
) -> AsyncIterator[FlakyDelivery]:
    """An org's receiver answers 500 twice, then 200; an application to the org follows."""
    case = new_case("Hedy Lamarr")
    async with webhook_receiver(new_secret(), fail_first=2) as receiver:
        webhook = await register_webhook(notifications, case.org, receiver)
        event = application_submitted(case)
        await publish(servers, event)
        delivery = await wait_for_final_delivery(notifications, case.org, webhook["webhook_id"])
        yield FlakyDelivery(case, event, receiver, webhook["webhook_id"], delivery)


async def test_a_receiver_failing_twice_gets_the_signed_event_on_the_third_attempt(
    failed_twice_then_delivered: FlakyDelivery,
) -> None:
    receiver, event = failed_twice_then_delivered.receiver, failed_twice_then_delivered.event
    assert [request.answered for request in receiver.requests] == [500, 500, 200]
    [accepted] = receiver.accepted
    assert accepted.method == "POST"
    assert accepted.path == "/hooks/hirestream"
    assert accepted.headers["content-type"].startswith("application/cloudevents+json")
    assert signature_verifies(
        accepted.headers["x-hirestream-signature"], accepted.body, receiver.secret
    )
    body = json.loads(accepted.body)
    assert body["id"] == event.id
    assert body["type"] == "application.submitted"
    assert body["data"]["application_id"] == failed_twice_then_delivered.case.application_id


async def test_every_attempt_carries_the_same_body_and_a_valid_signature(
    failed_twice_then_delivered: FlakyDelivery,
) -> None:
    receiver = failed_twice_then_delivered.receiver
    assert len({request.body for request in receiver.requests}) == 1
    assert all(request.signature_ok for request in receiver.requests)


async def test_the_delivery_log_shows_one_delivery_with_three_attempts(
    notifications: httpx.AsyncClient, failed_twice_then_delivered: FlakyDelivery
) -> None:
    flaky = failed_twice_then_delivered
    [delivery] = await deliveries(notifications, flaky.case.org, flaky.webhook_id)
    assert delivery["status"] == "delivered"
    assert delivery["event_id"] == flaky.event.id
    assert delivery["event_type"] == "application.submitted"
    assert [attempt["ok"] for attempt in delivery["attempts"]] == [False, False, True]
    assert [attempt["number"] for attempt in delivery["attempts"]] == [1, 2, 3]
    assert delivery["attempts"][-1]["status_code"] == 200


async def test_a_webhook_delivered_on_the_third_attempt_is_reported_delivered_once(
    servers: Servers, failed_twice_then_delivered: FlakyDelivery
) -> None:
    flaky = failed_twice_then_delivered
    delivered = await settled_deliveries(servers, flaky.event.id, expected=4)
    webhook = [data for data in delivered if data["channel"] == "webhook"]
    assert len(webhook) == 1
    assert webhook[0]["outcome"] == "delivered"
    assert webhook[0]["attempts"] == 3
    assert webhook[0]["recipient"] == f"webhook:{flaky.webhook_id}"


async def test_webhooks_of_another_org_do_not_receive_the_event(
    notifications: httpx.AsyncClient, servers: Servers
) -> None:
    case, other_org = new_case("Radia Perlman"), f"globex-{tag()}"
    async with (
        webhook_receiver(new_secret()) as ours,
        webhook_receiver(new_secret()) as theirs,
    ):
        webhook = await register_webhook(notifications, case.org, ours)
        other = await register_webhook(notifications, other_org, theirs)
        await publish(servers, application_submitted(case))
        await wait_for_final_delivery(notifications, case.org, webhook["webhook_id"])
        await asyncio.sleep(SETTLE_S)

        assert len(ours.accepted) == 1
        assert theirs.requests == []
        assert await deliveries(notifications, other_org, other["webhook_id"]) == []


async def test_an_org_webhook_follows_the_default_channels_of_each_kind(
    notifications: httpx.AsyncClient,
    servers: Servers,
    mongo: AsyncMongoClient[Json],
    notifications_db: str,
) -> None:
    # No preferences saved: posting.created goes to no webhook by default, an application
    # does (domain.DEFAULT_CHANNELS), though the webhook asked for both kinds.
    case = new_case("Frances Allen")
    async with webhook_receiver(new_secret()) as receiver:
        response = await notifications.post(
            "/webhooks",
            json={
                "url": receiver.url,
                "event_types": ["posting.created", "application.submitted"],
                "secret": receiver.secret,
            },
            headers=employer_token(case.org),
        )
        assert response.status_code == 201, response.text
        webhook_id = response.json()["webhook_id"]
        await announce_posting(servers, mongo, notifications_db, case)
        await publish(servers, application_submitted(case))
        await wait_for_final_delivery(notifications, case.org, webhook_id)
        await asyncio.sleep(SETTLE_S)

    kinds = [json.loads(request.body)["type"] for request in receiver.accepted]
    assert kinds == ["application.submitted"]


async def test_a_receiver_that_always_fails_ends_failed_after_the_last_attempt(
    notifications: httpx.AsyncClient, servers: Servers
) -> None:
    case = new_case("Barbara Liskov")
    async with webhook_receiver(new_secret(), always_fail=True) as receiver:
        webhook = await register_webhook(notifications, case.org, receiver)
        event = application_submitted(case)
        await publish(servers, event)
        delivery = await wait_for_final_delivery(notifications, case.org, webhook["webhook_id"])
        delivered = await settled_deliveries(servers, event.id, expected=4)

    assert delivery["status"] == "failed"
    assert [attempt["ok"] for attempt in delivery["attempts"]] == [False] * MAX_ATTEMPTS
    assert len(receiver.requests) == MAX_ATTEMPTS
    [reported] = [data for data in delivered if data["channel"] == "webhook"]
    assert reported["outcome"] == "failed"
    assert reported["attempts"] == MAX_ATTEMPTS
    assert reported["error"] == "webhook answered 500"


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


# --- authentication -----------------------------------------------------------------------

SOME_ID = "6650f1c2e4b0a1b2c3d4e5f6"
ROUTES: list[tuple[str, str, Json | None]] = [
    ("GET", "/notifications", None),
    ("POST", "/notifications/0b9e6f0e-2c61-5a53-9d3c-6b0f5d1f2a77/read", None),
    ("GET", "/preferences", None),
    ("PUT", "/preferences", {"channels": {"posting.created": ["in_app"]}}),
    ("POST", "/alerts", {"skills": ["python"], "city": "Lisbon"}),
    ("GET", "/alerts", None),
    ("DELETE", f"/alerts/{SOME_ID}", None),
    (
        "POST",
        "/webhooks",
        {
            "url": "https://hooks.acme.example/in",
            "event_types": ["application.submitted"],
            "secret": "whsec-3f9a1c7e5b2d4f60",
        },
    ),
    ("GET", "/webhooks", None),
    ("DELETE", f"/webhooks/{SOME_ID}", None),
    ("GET", f"/webhooks/{SOME_ID}/deliveries", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
async def test_every_route_needs_a_token(
    notifications: httpx.AsyncClient, method: str, path: str, body: Json | None
) -> None:
    response = await notifications.request(method, path, json=body)
    problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")

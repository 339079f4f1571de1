"""Email that can be refused, and the employer told of an expired posting, on the real broker
(SCRAM logins), database and SMTP catcher.

- A job alert's email carries `List-Unsubscribe` (the one-click URL and a mailto) and
  `List-Unsubscribe-Post`; a POST of that URL, without a login, as a mail app sends it, turns
  that kind of email off: the next matching posting reaches the inbox, not the mailbox. A
  changed or expired token is refused (422 problem details) and changes nothing.
- A `posting.closed` with reason `expired`, produced by the postings principal, gives the
  employer org an inbox item and an email to the posting's contact address; the same event
  again changes nothing, another close reason tells nobody, and an event from another source
  goes to the dead-letter topic.

Rules behind these (the token, the plan) are tested without servers in
tests/unit/notifications/test_unsubscribe.py and test_inbox_and_expiry.py.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from pymongo import AsyncMongoClient

from hirestream.notifications.domain import UnsubscribeScope, user_recipient
from hirestream.shared.events.envelope import CloudEvent, serialize, source_of
from hirestream.shared.events.postings import POSTING_CLOSED, CloseReason, PostingClosed
from hirestream.shared.events.types import utc_now
from tests.conftest import bearer, unique_db
from tests.support.http import assert_problem
from tests.support.kafka import read_until
from tests.support.notifications import (
    Case,
    alert_body,
    inbox,
    mails_to,
    new_case,
    new_id,
    posting_created,
    running_notifications,
    save_alert,
    tag,
    unsubscribe_links,
    wait_for_inbox,
    wait_for_mail,
)
from tests.support.polling import eventually
from tests.support.servers import Servers, kafka_client

pytestmark = pytest.mark.integration

Json = dict[str, Any]
PUBLIC_BASE_URL = "https://notifications.hirestream.test"
ONE_CLICK = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture(scope="module")
def notifications_db() -> str:
    return unique_db("notifications")


@pytest.fixture(scope="module")
async def notifications(
    base_env: dict[str, str], notifications_db: str
) -> AsyncIterator[httpx.AsyncClient]:
    async for client in running_notifications(
        base_env, notifications_db, public_base_url=PUBLIC_BASE_URL
    ):
        yield client


async def publish_as_postings(servers: Servers, event: CloudEvent[Any]) -> None:
    """Produce as the postings service does: its own Kafka principal, the only one the ACLs
    let write posting.* topics."""
    await produce_as(servers, "postings", event.type, serialize(event), event.subject.encode())


async def produce_as(
    servers: Servers, principal: str, topic: str, value: bytes, key: bytes
) -> None:
    producer = AIOKafkaProducer(**kafka_client(servers.kafka_bootstrap, principal), acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            topic,
            value,
            key=key,
            headers=[("content-type", b"application/cloudevents+json; charset=UTF-8")],
        )
    finally:
        await producer.stop()


def one_click_url(mail: EmailMessage) -> str:
    """The https URL of the email's List-Unsubscribe header."""
    urls = [part.strip(" <>") for part in str(mail["List-Unsubscribe"]).split(",")]
    [url] = [url for url in urls if url.startswith("https:")]
    return url


def path_and_token(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    [token] = parse_qs(parts.query)["token"]
    return parts.path, token


# --- one-click unsubscribe ------------------------------------------------------------------


@dataclass(frozen=True)
class Unsubscribed:
    candidate_id: str
    address: str
    first: str  # the posting whose email carried the link
    second: str  # a posting matching after the unsubscribe
    mail: EmailMessage
    response: httpx.Response

    @property
    def headers(self) -> dict[str, str]:
        return bearer("candidate", sub=self.candidate_id)


@pytest.fixture(scope="module")
async def unsubscribed(notifications: httpx.AsyncClient, servers: Servers) -> Unsubscribed:
    """A candidate's alert emails a matching posting; the candidate's mail app POSTs the
    email's one-click URL (no login); then another posting matches the alert."""
    candidate_id, address = f"cand-{tag()}", f"ada+{tag()}@example.com"
    await save_alert(notifications, candidate_id, alert_body("Bilbao", email=address))
    bilbao = {"city": "Bilbao", "country": "ES"}
    first, second = new_id(), new_id()
    org = f"acme-{tag()}"
    await publish_as_postings(servers, posting_created(first, org, location=bilbao))
    [mail] = await wait_for_mail(servers, address)

    path, token = path_and_token(one_click_url(mail))
    response = await notifications.post(
        path, params={"token": token}, content=b"List-Unsubscribe=One-Click", headers=ONE_CLICK
    )

    await publish_as_postings(servers, posting_created(second, org, location=bilbao))
    await wait_for_inbox(notifications, bearer("candidate", sub=candidate_id), second)
    return Unsubscribed(candidate_id, address, first, second, mail, response)


async def test_an_alert_email_carries_the_one_click_and_mailto_unsubscribe_headers(
    unsubscribed: Unsubscribed,
) -> None:
    mail = unsubscribed.mail
    url = one_click_url(mail)
    assert url.startswith(f"{PUBLIC_BASE_URL}/unsubscribe?token=")
    assert "<mailto:unsubscribe@hirestream.dev?subject=unsubscribe>" in str(
        mail["List-Unsubscribe"]
    )
    assert str(mail["List-Unsubscribe-Post"]) == "List-Unsubscribe=One-Click"
    assert mail.get_content_type() == "multipart/alternative"
    assert {part.get_content_type() for part in mail.iter_parts()} == {"text/plain", "text/html"}
    # The link names the recipient and the kind, never the address it was sent to.
    assert unsubscribed.address not in url


async def test_the_one_click_post_without_a_login_answers_200(
    unsubscribed: Unsubscribed,
) -> None:
    assert unsubscribed.response.status_code == 200, unsubscribed.response.text
    assert unsubscribed.response.json() == {"kind": "posting.created", "email": False}


async def test_after_unsubscribing_the_next_alert_reaches_the_inbox_but_not_the_mailbox(
    notifications: httpx.AsyncClient,
    servers: Servers,
    mongo: AsyncMongoClient[Json],
    notifications_db: str,
    unsubscribed: Unsubscribed,
) -> None:
    items = await inbox(notifications, unsubscribed.headers)
    assert {item["subject"] for item in items} == {unsubscribed.first, unsubscribed.second}
    # The inbox item and any email are stored in one write: none was made for the second.
    stored = mongo[notifications_db]["notifications"]
    assert await stored.count_documents({"subject": unsubscribed.second, "channel": "email"}) == 0
    assert [str(mail["Subject"]) for mail in mails_to(servers, unsubscribed.address)] == [
        str(unsubscribed.mail["Subject"])
    ]


async def test_the_preferences_show_email_off_for_alerts_only(
    notifications: httpx.AsyncClient, unsubscribed: Unsubscribed
) -> None:
    response = await notifications.get("/preferences", headers=unsubscribed.headers)
    channels = response.json()["channels"]
    assert channels["posting.created"] == ["in_app"]
    assert channels["application.submitted"] == ["email", "in_app", "webhook"]


async def test_a_bearer_token_is_neither_needed_nor_looked_at(
    notifications: httpx.AsyncClient, unsubscribed: Unsubscribed
) -> None:
    _, token = path_and_token(one_click_url(unsubscribed.mail))
    forged_bearer = {"Authorization": "Bearer not-a-jwt"}
    response = await notifications.post(
        "/unsubscribe", params={"token": token}, headers=forged_bearer
    )
    assert response.status_code == 200, response.text


async def test_a_changed_token_is_refused_and_changes_nothing(
    notifications: httpx.AsyncClient,
) -> None:
    victim = f"cand-{tag()}"
    genuine = unsubscribe_links().token(
        UnsubscribeScope(user_recipient(f"cand-{tag()}"), "posting.created"), now=utc_now()
    )
    forged = unsubscribe_links("another-key-" + "q" * 32).token(
        UnsubscribeScope(user_recipient(victim), "posting.created"), now=utc_now()
    )
    tampered = genuine[:-2] + ("AA" if not genuine.endswith("AA") else "BB")
    for token in (forged, tampered, "u1.garbage", "x" * 2001):
        response = await notifications.post("/unsubscribe", params={"token": token})
        assert_problem(response, 422)
    response = await notifications.get("/preferences", headers=bearer("candidate", sub=victim))
    assert response.json()["channels"]["posting.created"] == ["email", "in_app"]


async def test_an_expired_token_is_refused_naming_the_token(
    notifications: httpx.AsyncClient,
) -> None:
    candidate_id = f"cand-{tag()}"
    expired = unsubscribe_links().token(
        UnsubscribeScope(user_recipient(candidate_id), "application.submitted"),
        now=utc_now() - timedelta(days=91),
    )
    response = await notifications.post("/unsubscribe", params={"token": expired})
    assert_problem(response, 422)
    assert response.json()["errors"] == [
        {"field": "token", "message": "the unsubscribe link expired"}
    ]
    preferences = await notifications.get(
        "/preferences", headers=bearer("candidate", sub=candidate_id)
    )
    assert "email" in preferences.json()["channels"]["application.submitted"]


async def test_without_a_token_the_route_answers_422(notifications: httpx.AsyncClient) -> None:
    assert_problem(await notifications.post("/unsubscribe"), 422)


# --- the employer told of an expired posting ----------------------------------------------


def posting_closed(case: Case, reason: CloseReason, **changes: Any) -> CloudEvent[PostingClosed]:
    data = PostingClosed.model_validate(
        {
            "posting_id": case.posting_id,
            "org": case.org,
            "reason": reason,
            "version": 2,
            "closed_at": utc_now(),
            "title": case.title,
            "contact_email": case.contact_email,
            **changes,
        }
    )
    return POSTING_CLOSED.new(data, source=source_of("postings"))


@dataclass(frozen=True)
class Expired:
    case: Case
    expired: CloudEvent[PostingClosed]
    control: CloudEvent[PostingClosed]


@pytest.fixture(scope="module")
async def expired_posting(notifications: httpx.AsyncClient, servers: Servers) -> Expired:
    """On one partition (one key), in this order: the expiry, the same event again, a close
    for another reason, and an expiry with a new event id (the control: once it is told,
    everything before it was handled)."""
    case = new_case()
    expired = posting_closed(case, CloseReason.EXPIRED)
    control = posting_closed(case, CloseReason.EXPIRED, version=4, title="Control Role")
    for event in (
        expired,
        expired,
        posting_closed(case, CloseReason.FILLED, version=3, title="Filled Role"),
        control,
    ):
        await publish_as_postings(servers, event)
    await wait_for_inbox(notifications, case.employer, case.posting_id, count=2)
    return Expired(case, expired, control)


async def test_an_expired_posting_puts_one_item_in_the_employer_orgs_inbox(
    notifications: httpx.AsyncClient, expired_posting: Expired
) -> None:
    case = expired_posting.case
    items = await inbox(notifications, case.employer, case.posting_id)
    # The expiry once, the control once; the filled close told nobody.
    assert [item["title"] for item in items] == [
        "Your posting expired: Control Role",
        f"Your posting expired: {case.title}",
    ]
    assert {item["kind"] for item in items} == {"posting.closed"}
    assert not any(item["read"] for item in items)
    # Every recruiter of the org reads it: the inbox is the org's.
    other_recruiter = bearer("employer", sub=f"recruiter-{tag()}", org=case.org)
    assert len(await inbox(notifications, other_recruiter, case.posting_id)) == 2


async def test_an_expired_posting_is_emailed_to_its_contact_address_once(
    servers: Servers, expired_posting: Expired
) -> None:
    case = expired_posting.case

    async def both() -> list[EmailMessage] | None:
        found = mails_to(servers, case.contact_email)
        return found if len(found) >= 2 else None

    mails = await eventually(both)
    subjects = sorted(str(mail["Subject"]) for mail in mails)
    assert subjects == [
        "Your posting expired: Control Role",
        f"Your posting expired: {case.title}",
    ]
    assert all(mail["List-Unsubscribe-Post"] for mail in mails)


async def test_the_unread_count_and_read_all_cover_the_expiry_items(
    notifications: httpx.AsyncClient, expired_posting: Expired
) -> None:
    employer = expired_posting.case.employer
    count = await notifications.get("/notifications/unread-count", headers=employer)
    assert count.json() == {"unread": 2}
    unread = await notifications.get("/notifications", params={"unread": "true"}, headers=employer)
    assert len(unread.json()["items"]) == 2

    marked = await notifications.post("/notifications/read-all", headers=employer)
    assert marked.json() == {"marked_read": 2}
    count = await notifications.get("/notifications/unread-count", headers=employer)
    assert count.json() == {"unread": 0}
    unread = await notifications.get("/notifications", params={"unread": "true"}, headers=employer)
    assert unread.json()["items"] == []
    everything = await inbox(notifications, employer)
    assert len(everything) == 2
    assert all(item["read"] for item in everything)


async def test_a_posting_closed_from_another_source_goes_to_the_dead_letter_topic(
    notifications: httpx.AsyncClient, servers: Servers
) -> None:
    case = new_case()
    forged = posting_closed(case, CloseReason.EXPIRED).model_copy(
        update={"source": source_of("applications")}
    )
    key = case.posting_id.encode()
    await produce_as(servers, "operator", "posting.closed", serialize(forged), key)

    def dead_lettered_by_notifications(records: list[Any]) -> bool:
        return any(
            r.key == key and r.headers.get("dlq-consumer-group") == "notifications" for r in records
        )

    records = await read_until(
        servers.kafka_bootstrap, ["posting.closed.dlq"], dead_lettered_by_notifications
    )
    [dead] = [
        r
        for r in records
        if r.key == key and r.headers.get("dlq-consumer-group") == "notifications"
    ]
    assert dead.headers["dlq-error"].startswith("untrusted source 'hirestream/applications'")
    assert json.loads(dead.value)["id"] == forged.id
    assert await inbox(notifications, case.employer, case.posting_id) == []

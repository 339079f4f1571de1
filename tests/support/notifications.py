"""Test support for the notifications service.

- Test data: a `Case` (one candidate applying to one org's posting, ids unique to a test) and
  the events it causes.
- In-memory fakes of the ports `services.py` and `delivery.py` declare, behaving as the MongoDB
  stores promise to: a notification id stored once, pages newest first, a delivery's lease
  taken only from the due time it was read with. `NotificationsFakes` puts them together into
  a unit of work.
- Helpers for the integration tests: the service on the real servers, its HTTP API, the SMTP
  catcher and the `notification.delivered` topic.
"""

from __future__ import annotations

import email
import email.policy
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any, TypeVar

import httpx
from pymongo import AsyncMongoClient

from hirestream.notifications.app import NotificationsSettings, create_app
from hirestream.notifications.domain import (
    DeliveryStatus,
    Notification,
    UnsubscribeLinks,
    WebhookRegistration,
    notification_id,
)
from hirestream.shared.events.applications import (
    APPLICATION_STATUS_CHANGED,
    APPLICATION_SUBMITTED,
    ApplicationStatus,
    ApplicationStatusChanged,
    ApplicationSubmitted,
    Candidate,
    Match,
)
from hirestream.shared.events.envelope import CloudEvent, serialize, source_of
from hirestream.shared.events.notifications import Channel
from hirestream.shared.events.postings import POSTING_CREATED, PostingCreated
from hirestream.shared.events.types import utc_now
from hirestream.shared.identity import Principal, Role
from tests.conftest import bearer, client_for, settings_for
from tests.support.factories import snapshot_fields
from tests.support.kafka import Record, produce, read_until
from tests.support.polling import eventually
from tests.support.receivers import WebhookReceiver
from tests.support.servers import Servers

T = TypeVar("T")
Json = dict[str, Any]

# The key the tests' notifications services sign unsubscribe links with, so a test can make
# the link an email would carry (random, as outside development a placeholder is refused).
UNSUBSCRIBE_SECRET = "Xq7" + uuid.uuid4().hex + "Zk9"


def unsubscribe_links(secret: str = UNSUBSCRIBE_SECRET) -> UnsubscribeLinks:
    return UnsubscribeLinks(
        key=secret.encode(),
        base_url="http://testserver",
        mailto_address="unsubscribe@hirestream.dev",
        lifetime=timedelta(days=90),
    )


# ------------------------------------------------------------------------------ test data


def new_id() -> str:
    return uuid.uuid4().hex[:24]


def tag() -> str:
    return uuid.uuid4().hex[:8]


def new_secret() -> str:
    return f"whsec-{uuid.uuid4().hex}"


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
        return employer_token(self.org)

    @property
    def candidate_caller(self) -> Principal:
        return Principal(self.candidate_id, Role.CANDIDATE)

    @property
    def employer_caller(self) -> Principal:
        return Principal(f"recruiter-{tag()}", Role.EMPLOYER, self.org)


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


def employer_token(org: str) -> dict[str, str]:
    return bearer("employer", sub=f"recruiter-{tag()}", org=org)


ADMIN = Principal("admin-1", Role.ADMIN)


def posting_created(posting_id: str, org: str, **changes: Any) -> CloudEvent[PostingCreated]:
    data = PostingCreated.model_validate(snapshot_fields(posting_id, 1, org=org, **changes))
    return POSTING_CREATED.new(data, source=source_of("postings"))


def case_posting(case: Case, *, with_contact_email: bool = True) -> CloudEvent[PostingCreated]:
    """The `posting.created` of the case's posting (the application names its title)."""
    contact_email = case.contact_email if with_contact_email else None
    return posting_created(case.posting_id, case.org, title=case.title, contact_email=contact_email)


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
    return APPLICATION_SUBMITTED.new(data, source=source_of("applications"))


def status_changed(
    case: Case, to_status: ApplicationStatus
) -> CloudEvent[ApplicationStatusChanged]:
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
    return APPLICATION_STATUS_CHANGED.new(data, source=source_of("applications"))


def alert_body(city: str, **changes: Any) -> Json:
    body: Json = {"skills": ["Python", "Kafka"], "city": city}
    body.update(changes)
    return body


def registration(url: str, *kinds: str, secret: str | None = None) -> WebhookRegistration:
    return WebhookRegistration(
        url=url, event_types=list(kinds or ["application.submitted"]), secret=secret or new_secret()
    )


def stored_notification(
    recipient: str,
    subject: str,
    *,
    channel: Channel = Channel.IN_APP,
    created_at: datetime | None = None,
    **fields: Any,
) -> Notification:
    """A notification as a use case stores it: in-app ones delivered, the others pending."""
    source_event_id = fields.pop("source_event_id", f"event-of-{subject}")
    pending = channel is not Channel.IN_APP
    return Notification.model_validate(
        {
            "notification_id": notification_id(source_event_id, recipient, channel),
            "recipient": recipient,
            "channel": channel,
            "kind": "application.submitted",
            "subject": subject,
            "source_event_id": source_event_id,
            "created_at": created_at or utc_now(),
            "title": "Application sent: Senior Backend Developer",
            "body": "We passed your application on to the employer.",
            "status": DeliveryStatus.PENDING if pending else DeliveryStatus.DELIVERED,
            "delivery_due_at": utc_now() if pending else None,
            **fields,
        }
    )


# ------------------------------------------------------------- integration: the service


async def running_notifications(
    base_env: dict[str, str], database: str, **settings: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """The service in this process, its lifespan (Kafka, MongoDB, the worker) running."""
    settings = {"unsubscribe_secret": UNSUBSCRIBE_SECRET, **settings}
    app = create_app(
        settings_for(NotificationsSettings, base_env, mongodb_database=database, **settings)
    )
    async for client in client_for(app):
        yield client


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
    await publish(servers, case_posting(case, with_contact_email=with_contact_email))
    announced = mongo[db]["announced_postings"]
    await eventually(lambda: announced.find_one({"_id": case.posting_id}))


def page_items(response: httpx.Response) -> list[Json]:
    """The items of a list response, which docs/api.md shapes as a cursor page."""
    assert response.status_code == 200, response.text
    body = response.json()
    assert isinstance(body, dict), f"a list must answer {{items, next_cursor}}, got {body!r}"
    assert set(body) == {"items", "next_cursor"}
    items: list[Json] = body["items"]
    return items


async def inbox(
    client: httpx.AsyncClient, headers: dict[str, str], subject: str | None = None
) -> list[Json]:
    response = await client.get("/notifications", headers=headers, params={"limit": 100})
    return [item for item in page_items(response) if subject is None or item["subject"] == subject]


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


async def save_alert(client: httpx.AsyncClient, candidate_id: str, body: Json) -> Json:
    # An alert emails only the address the candidate's token vouches for.
    token = bearer("candidate", sub=candidate_id, email=body.get("email"))
    response = await client.post("/alerts", json=body, headers=token)
    assert response.status_code == 201, response.text
    alert: Json = response.json()
    return alert


async def register_webhook(
    client: httpx.AsyncClient, org: str, receiver: WebhookReceiver, *kinds: str
) -> Json:
    response = await client.post(
        "/webhooks",
        json={
            "url": receiver.url,
            "event_types": list(kinds or ["application.submitted"]),
            "secret": receiver.secret,
        },
        headers=employer_token(org),
    )
    assert response.status_code == 201, response.text
    webhook: Json = response.json()
    return webhook


async def deliveries(client: httpx.AsyncClient, org: str, webhook_id: str) -> list[Json]:
    response = await client.get(f"/webhooks/{webhook_id}/deliveries", headers=employer_token(org))
    return page_items(response)


async def wait_for_final_delivery(client: httpx.AsyncClient, org: str, webhook_id: str) -> Json:
    async def probe() -> Json | None:
        final = [d for d in await deliveries(client, org, webhook_id) if d["status"] != "pending"]
        return final[0] if final else None

    return await eventually(probe)


# ------------------------------------------------------- integration: what was delivered


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


async def read_delivered(servers: Servers, *, settle_s: float) -> list[Record]:
    """The whole `notification.delivered` topic, read for `settle_s` (as long as a duplicate
    would take to show)."""
    return await read_until(
        servers.kafka_bootstrap, ["notification.delivered"], lambda _: False, timeout_s=settle_s
    )


async def wait_for_delivered(servers: Servers, source_event_id: str, *, expected: int) -> None:
    """Until `expected` notification.delivered events about one event are on the topic."""
    await read_until(
        servers.kafka_bootstrap,
        ["notification.delivered"],
        lambda records: len(delivered_about(records, source_event_id)) >= expected,
    )

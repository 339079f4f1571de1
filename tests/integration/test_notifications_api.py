"""The notifications HTTP API on the real database: every route answers, shapes its body and
maps the use cases' errors to problem details (401 without a token, 403 for a role, 404 for
what is not the caller's, 422 for a refused body or webhook URL).

The rules behind the answers (whose inbox, whose alert or webhook, which URL is refused) are
tested without servers in tests/unit/notifications/test_services_requests.py. The inbox is
filled by writing notifications through the service's own store, as its consumer would: how
events become notifications is tested in test_notifications_consumer.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from hirestream.notifications.app import NotificationsSettings, create_app
from hirestream.notifications.domain import user_recipient
from hirestream.notifications.store import NOTIFICATIONS, NotificationStore
from hirestream.shared.events.notifications import Channel
from hirestream.shared.events.types import utc_now
from tests.conftest import bearer, http_only_client_for, settings_for, unique_db
from tests.support.http import assert_problem
from tests.support.notifications import (
    Case,
    alert_body,
    employer_token,
    inbox,
    new_case,
    new_secret,
    page_items,
    running_notifications,
    save_alert,
    stored_notification,
    tag,
)

pytestmark = pytest.mark.integration

Json = dict[str, Any]
DEFAULT_CHANNELS = {
    "posting.created": ["email", "in_app"],
    "posting.closed": ["email", "in_app"],
    "application.submitted": ["email", "in_app", "webhook"],
    "application.status_changed": ["email", "in_app", "webhook"],
}
HOOK_URL = "http://127.0.0.1:8080/hooks/hirestream"


@pytest.fixture(scope="module")
def notifications_db() -> str:
    return unique_db("notifications")


@pytest.fixture(scope="module")
async def notifications(
    base_env: dict[str, str], notifications_db: str
) -> AsyncIterator[httpx.AsyncClient]:
    async for client in running_notifications(
        base_env, notifications_db, webhook_allow_private=True
    ):
        yield client


@pytest.fixture(scope="module")
def store(mongo: AsyncMongoClient[Json], notifications_db: str) -> NotificationStore:
    """The store the service under test reads its inbox from."""
    return NotificationStore(mongo[notifications_db][NOTIFICATIONS])


def webhook_body(url: str = HOOK_URL, secret: str | None = None) -> Json:
    return {
        "url": url,
        "event_types": ["application.submitted"],
        "secret": secret or new_secret(),
    }


async def register(client: httpx.AsyncClient, org: str) -> Json:
    response = await client.post("/webhooks", json=webhook_body(), headers=employer_token(org))
    assert response.status_code == 201, response.text
    webhook: Json = response.json()
    return webhook


# --- authentication -----------------------------------------------------------------------

SOME_ID = "6650f1c2e4b0a1b2c3d4e5f6"
# Every route but POST /unsubscribe, public by design: its signed token authorises it
# (test_notifications_unsubscribe_and_expiry.py).
ROUTES: list[tuple[str, str, Json | None]] = [
    ("GET", "/notifications", None),
    ("POST", "/notifications/0b9e6f0e-2c61-5a53-9d3c-6b0f5d1f2a77/read", None),
    ("GET", "/preferences", None),
    ("PUT", "/preferences", {"channels": {"posting.created": ["in_app"]}}),
    ("POST", "/alerts", {"skills": ["python"], "city": "Lisbon"}),
    ("GET", "/alerts", None),
    ("DELETE", f"/alerts/{SOME_ID}", None),
    ("POST", "/webhooks", webhook_body("https://hooks.acme.example/in", "whsec-3f9a1c7e5b2d4f60")),
    ("GET", "/webhooks", None),
    ("DELETE", f"/webhooks/{SOME_ID}", None),
    ("GET", f"/webhooks/{SOME_ID}/deliveries", None),
    ("GET", "/notifications/unread-count", None),
    ("POST", "/notifications/read-all", None),
    ("POST", f"/webhooks/{SOME_ID}/ping", None),
    ("POST", f"/webhooks/{SOME_ID}/secret", {"secret": "whsec-8d1e5b3c9a7f2064"}),
    ("POST", f"/webhooks/{SOME_ID}/deliveries/{SOME_ID}/redeliver", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
async def test_every_route_needs_a_token(
    notifications: httpx.AsyncClient, method: str, path: str, body: Json | None
) -> None:
    response = await notifications.request(method, path, json=body)
    assert_problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")


# --- the inbox ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def two_in_the_inbox(store: NotificationStore) -> Case:
    """A candidate told of two applications, a minute apart, and an email about one."""
    case = new_case("Dorothy Vaughan")
    recipient, now = user_recipient(case.candidate_id), utc_now()
    await store.create(
        [
            stored_notification(recipient, "older", created_at=now - timedelta(minutes=1)),
            stored_notification(recipient, "newer", created_at=now),
            stored_notification(recipient, "newer", channel=Channel.EMAIL, email=case.email),
        ]
    )
    return case


async def test_the_inbox_lists_the_in_app_items_newest_first(
    notifications: httpx.AsyncClient, two_in_the_inbox: Case
) -> None:
    items = await inbox(notifications, two_in_the_inbox.candidate)
    assert [item["subject"] for item in items] == ["newer", "older"]
    assert items[0]["created_at"] > items[1]["created_at"]
    assert set(items[0]) == {
        "notification_id",
        "kind",
        "subject",
        "title",
        "body",
        "created_at",
        "read",
    }


async def test_the_inbox_pages_with_its_cursor(
    notifications: httpx.AsyncClient, two_in_the_inbox: Case
) -> None:
    headers = two_in_the_inbox.candidate
    one = await notifications.get("/notifications", params={"limit": 1}, headers=headers)
    cursor = one.json()["next_cursor"]
    assert cursor is not None
    two = await notifications.get(
        "/notifications", params={"limit": 1, "cursor": cursor}, headers=headers
    )
    assert [item["subject"] for item in page_items(one) + page_items(two)] == ["newer", "older"]
    assert two.json()["next_cursor"] is None


async def test_marking_a_notification_read(
    notifications: httpx.AsyncClient, store: NotificationStore
) -> None:
    case = new_case("Mary Jackson")
    item = stored_notification(user_recipient(case.candidate_id), case.application_id)
    await store.create([item])

    response = await notifications.post(
        f"/notifications/{item.notification_id}/read", headers=case.candidate
    )
    assert response.status_code == 200, response.text
    assert response.json()["read"] is True
    assert response.json()["notification_id"] == item.notification_id
    [again] = await inbox(notifications, case.candidate, case.application_id)
    assert again["read"] is True


async def test_someone_elses_notification_cannot_be_marked_read(
    notifications: httpx.AsyncClient, store: NotificationStore
) -> None:
    case = new_case("Annie Easley")
    item = stored_notification(user_recipient(case.candidate_id), case.application_id)
    await store.create([item])

    stranger = bearer("candidate", sub=f"cand-{tag()}")
    response = await notifications.post(
        f"/notifications/{item.notification_id}/read", headers=stranger
    )
    assert_problem(response, 404)
    [unchanged] = await inbox(notifications, case.candidate, case.application_id)
    assert unchanged["read"] is False


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


async def test_preferences_for_an_unknown_event_kind_are_refused(
    notifications: httpx.AsyncClient,
) -> None:
    response = await notifications.put(
        "/preferences",
        json={"channels": {"posting.deleted": ["email"]}},
        headers=bearer("candidate", sub=f"cand-{tag()}"),
    )
    body = assert_problem(response, 422)
    assert [error["field"] for error in body["errors"]] == ["channels"]


# --- job alerts ---------------------------------------------------------------------------


async def test_a_candidate_saves_a_job_alert(notifications: httpx.AsyncClient) -> None:
    address = f"ada+{tag()}@example.com"
    response = await notifications.post(
        "/alerts",
        json=alert_body("Lisbon", email=address),
        headers=bearer("candidate", sub=f"cand-{tag()}", email=address),
    )
    assert response.status_code == 201, response.text
    alert = response.json()
    assert alert["skills"] == ["python", "kafka"]
    assert alert["city"] == "Lisbon"
    assert response.headers["location"] == f"/alerts/{alert['alert_id']}"


@pytest.mark.parametrize(
    "token_email", [None, "someone.else@example.com"], ids=["no-email-claim", "another-address"]
)
async def test_an_alert_emails_only_the_verified_address_of_the_token(
    notifications: httpx.AsyncClient, token_email: str | None
) -> None:
    candidate = f"cand-{tag()}"
    token = bearer("candidate", sub=candidate, email=token_email or "")  # "": no claim at all
    response = await notifications.post(
        "/alerts", json=alert_body("Lisbon", email=f"victim+{tag()}@example.com"), headers=token
    )
    assert assert_problem(response, 422)["errors"][0]["field"] == "email"


async def test_saved_alerts_are_listed(notifications: httpx.AsyncClient) -> None:
    candidate_id = f"cand-{tag()}"
    alert = await save_alert(notifications, candidate_id, alert_body("Lisbon"))
    response = await notifications.get("/alerts", headers=bearer("candidate", sub=candidate_id))
    assert [item["alert_id"] for item in page_items(response)] == [alert["alert_id"]]


async def test_deleting_an_alert_answers_204_then_404(notifications: httpx.AsyncClient) -> None:
    candidate_id = f"cand-{tag()}"
    alert = await save_alert(notifications, candidate_id, alert_body("Lisbon"))
    candidate = bearer("candidate", sub=candidate_id)
    first = await notifications.delete(f"/alerts/{alert['alert_id']}", headers=candidate)
    assert first.status_code == 204
    second = await notifications.delete(f"/alerts/{alert['alert_id']}", headers=candidate)
    assert_problem(second, 404)


async def test_a_candidate_cannot_delete_someone_elses_alert(
    notifications: httpx.AsyncClient,
) -> None:
    alert = await save_alert(notifications, f"cand-{tag()}", alert_body("Lisbon"))
    response = await notifications.delete(
        f"/alerts/{alert['alert_id']}", headers=bearer("candidate", sub=f"cand-{tag()}")
    )
    assert_problem(response, 404)


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
    assert_problem(response, 403)


# --- webhooks -----------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/hooks", "https://127.0.0.1/hooks"])
async def test_a_loopback_webhook_url_is_refused_when_private_targets_are_not_allowed(
    base_env: dict[str, str], url: str
) -> None:
    # Answered before any database or broker call: the app's lifespan need not run.
    settings = settings_for(
        NotificationsSettings, base_env, mongodb_database=unique_db("notifications")
    )
    async for strict in http_only_client_for(create_app(settings)):
        response = await strict.post(
            "/webhooks", json=webhook_body(url), headers=employer_token(f"acme-{tag()}")
        )
        body = assert_problem(response, 422)
        assert [error["field"] for error in body["errors"]] == ["url"]


async def test_registering_a_webhook_answers_201_without_the_secret(
    notifications: httpx.AsyncClient,
) -> None:
    secret, org = new_secret(), f"acme-{tag()}"
    response = await notifications.post(
        "/webhooks", json=webhook_body(secret=secret), headers=employer_token(org)
    )
    assert response.status_code == 201, response.text
    webhook = response.json()
    assert "secret" not in webhook
    assert secret not in response.text
    assert webhook["url"] == HOOK_URL
    assert webhook["event_types"] == ["application.submitted"]
    assert response.headers["location"] == f"/webhooks/{webhook['webhook_id']}"


async def test_an_orgs_webhooks_are_listed(notifications: httpx.AsyncClient) -> None:
    org = f"acme-{tag()}"
    webhook = await register(notifications, org)
    response = await notifications.get("/webhooks", headers=employer_token(org))
    listed = page_items(response)
    assert [item["webhook_id"] for item in listed] == [webhook["webhook_id"]]
    assert "secret" not in listed[0]


async def test_deleting_a_webhook_answers_204_then_404(notifications: httpx.AsyncClient) -> None:
    org = f"acme-{tag()}"
    webhook = await register(notifications, org)
    path = f"/webhooks/{webhook['webhook_id']}"
    assert (await notifications.delete(path, headers=employer_token(org))).status_code == 204
    assert_problem(await notifications.delete(path, headers=employer_token(org)), 404)


async def test_a_webhooks_deliveries_are_listed_to_its_org_and_not_found_for_another(
    notifications: httpx.AsyncClient,
) -> None:
    org = f"acme-{tag()}"
    webhook = await register(notifications, org)
    path = f"/webhooks/{webhook['webhook_id']}/deliveries"
    assert page_items(await notifications.get(path, headers=employer_token(org))) == []
    assert_problem(await notifications.get(path, headers=employer_token(f"globex-{tag()}")), 404)


async def test_a_candidate_cannot_register_a_webhook(notifications: httpx.AsyncClient) -> None:
    response = await notifications.post(
        "/webhooks", json=webhook_body(), headers=bearer("candidate", sub=f"cand-{tag()}")
    )
    assert_problem(response, 403)

"""Webhooks for integrators on the real broker and database, against real receivers on
127.0.0.1 that check the signature with the secret they hold (tests/support/receivers.py, the
way an integrator's endpoint would; the service runs with WEBHOOK_ALLOW_PRIVATE so it may
reach them):

- a ping sends a signed `webhook.ping` and answers with the receiver's status;
- a failed delivery is sent again on request: the same event id, one more attempt recorded;
- after a secret rotation, deliveries carry one `v1` per valid secret, so a receiver still on
  the old secret and one already on the new both accept; once the overlap is over, only the
  new secret signs.

The rules behind these are tested without servers in
tests/unit/notifications/test_webhook_tools.py.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from hirestream.shared.events.types import utc_now
from tests.conftest import unique_db
from tests.support.http import assert_problem
from tests.support.notifications import (
    application_submitted,
    deliveries,
    employer_token,
    new_case,
    new_secret,
    publish,
    register_webhook,
    running_notifications,
    wait_for_final_delivery,
)
from tests.support.polling import eventually
from tests.support.receivers import (
    SIGNATURE_HEADER,
    ReceivedRequest,
    WebhookReceiver,
    signature_verifies,
    signatures_in,
    webhook_receiver,
)
from tests.support.servers import Servers

pytestmark = pytest.mark.integration

Json = dict[str, Any]
MAX_ATTEMPTS = 2
# Long enough for the requests made during it, short enough to wait for its end.
OVERLAP_S = 12


@pytest.fixture(scope="module")
async def notifications(base_env: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    async for client in running_notifications(
        base_env,
        unique_db("notifications"),
        webhook_allow_private=True,
        delivery_backoff_initial_s=0.2,
        delivery_backoff_max_s=0.5,
        delivery_max_attempts=MAX_ATTEMPTS,
        webhook_rotation_overlap_s=OVERLAP_S,
    ):
        yield client


async def ping(client: httpx.AsyncClient, org: str, webhook_id: str) -> Json:
    response = await client.post(f"/webhooks/{webhook_id}/ping", headers=employer_token(org))
    assert response.status_code == 200, response.text
    answer: Json = response.json()
    return answer


# --- ping -----------------------------------------------------------------------------------


async def test_a_ping_sends_a_signed_test_event_and_answers_with_the_receivers_status(
    notifications: httpx.AsyncClient,
) -> None:
    case = new_case()
    async with webhook_receiver(new_secret()) as receiver:
        webhook = await register_webhook(notifications, case.org, receiver)
        answer = await ping(notifications, case.org, webhook["webhook_id"])

    assert answer["ok"] is True
    assert answer["status_code"] == 200
    assert answer["error"] is None
    [request] = receiver.requests
    assert request.signature_ok
    assert request.headers["content-type"].startswith("application/cloudevents+json")
    event = json.loads(request.body)
    assert event["type"] == "webhook.ping"
    assert event["id"] == answer["event_id"]
    assert event["data"]["webhook_id"] == webhook["webhook_id"]
    # A test: it is no delivery of the webhook.
    assert await deliveries(notifications, case.org, webhook["webhook_id"]) == []


async def test_a_ping_to_a_failing_receiver_answers_200_with_its_status(
    notifications: httpx.AsyncClient,
) -> None:
    case = new_case()
    async with webhook_receiver(new_secret(), always_fail=True) as receiver:
        webhook = await register_webhook(notifications, case.org, receiver)
        answer = await ping(notifications, case.org, webhook["webhook_id"])
    assert (answer["ok"], answer["status_code"]) == (False, 500)
    assert answer["error"] == "webhook answered 500"


async def test_another_org_cannot_ping_a_webhook(notifications: httpx.AsyncClient) -> None:
    case = new_case()
    async with webhook_receiver(new_secret()) as receiver:
        webhook = await register_webhook(notifications, case.org, receiver)
        response = await notifications.post(
            f"/webhooks/{webhook['webhook_id']}/ping", headers=new_case().employer
        )
    assert_problem(response, 404)
    assert receiver.requests == []


# --- redelivery -----------------------------------------------------------------------------


async def test_a_failed_delivery_is_sent_again_with_the_same_event_as_a_new_attempt(
    notifications: httpx.AsyncClient, servers: Servers
) -> None:
    case = new_case()
    async with webhook_receiver(new_secret(), always_fail=True) as receiver:
        webhook = await register_webhook(notifications, case.org, receiver)
        event = application_submitted(case)
        await publish(servers, event)
        failed = await wait_for_final_delivery(notifications, case.org, webhook["webhook_id"])
        assert failed["status"] == "failed"
        assert len(failed["attempts"]) == MAX_ATTEMPTS

        receiver.always_fail = False  # the integrator fixed their endpoint
        path = f"/webhooks/{webhook['webhook_id']}/deliveries/{failed['delivery_id']}/redeliver"
        response = await notifications.post(path, headers=case.employer)

        assert response.status_code == 200, response.text
        redelivered = response.json()
        assert redelivered["delivery_id"] == failed["delivery_id"]
        assert redelivered["status"] == "delivered"
        assert [a["number"] for a in redelivered["attempts"]] == [1, 2, 3]
        assert [a["ok"] for a in redelivered["attempts"]] == [False, False, True]
        assert redelivered["attempts"][-1]["status_code"] == 200
        # The failed attempts recorded the receiver's status too.
        assert [a["status_code"] for a in redelivered["attempts"]] == [500, 500, 200]

        # The same body, so the same CloudEvent id: the receiver can tell it is a repeat.
        assert len({request.body for request in receiver.requests}) == 1
        [accepted] = receiver.accepted
        assert accepted.signature_ok
        assert json.loads(accepted.body)["id"] == event.id

        # The delivery log shows the new attempt on the same delivery.
        [logged] = await deliveries(notifications, case.org, webhook["webhook_id"])
        assert logged == redelivered

        # Delivered now: nothing to send again.
        assert_problem(await notifications.post(path, headers=case.employer), 409)
        assert_problem(await notifications.post(path, headers=new_case().employer), 404)
        assert len(receiver.requests) == MAX_ATTEMPTS + 1


# --- secret rotation ------------------------------------------------------------------------


def last(receiver: WebhookReceiver) -> ReceivedRequest:
    return receiver.requests[-1]


async def test_during_a_rotations_overlap_both_secrets_sign_and_after_it_only_the_new(
    notifications: httpx.AsyncClient, servers: Servers
) -> None:
    case = new_case()
    old, new = new_secret(), new_secret()
    async with webhook_receiver(old) as receiver:
        webhook = await register_webhook(notifications, case.org, receiver)
        webhook_id = webhook["webhook_id"]
        response = await notifications.post(
            f"/webhooks/{webhook_id}/secret", json={"secret": new}, headers=case.employer
        )
        assert response.status_code == 200, response.text
        rotated = response.json()
        assert "secret" not in rotated
        overlap_ends = datetime.fromisoformat(rotated["previous_secret_valid_until"])
        assert overlap_ends > utc_now()

        # A receiver still on the old secret accepts a real delivery, signed with both.
        await publish(servers, application_submitted(case))
        delivery = await wait_for_final_delivery(notifications, case.org, webhook_id)
        assert delivery["status"] == "delivered"
        header = last(receiver).headers[SIGNATURE_HEADER]
        assert signatures_in(header) == 2
        assert signature_verifies(header, last(receiver).body, old)
        assert signature_verifies(header, last(receiver).body, new)

        # The integrator switches to the new secret: accepted at once.
        receiver.secret = new
        assert (await ping(notifications, case.org, webhook_id))["ok"] is True
        assert signatures_in(last(receiver).headers[SIGNATURE_HEADER]) == 2

        # Once the overlap is over, the new secret alone signs.
        async def signed_once() -> Json | None:
            answer = await ping(notifications, case.org, webhook_id)
            once = signatures_in(last(receiver).headers[SIGNATURE_HEADER]) == 1
            return answer if once else None

        answer = await eventually(signed_once, timeout_s=OVERLAP_S + 30, every_s=1)
        assert answer["ok"] is True
        assert utc_now() >= overlap_ends
        assert not signature_verifies(
            last(receiver).headers[SIGNATURE_HEADER], last(receiver).body, old
        )

        # A receiver left on the old secret now refuses: the ping says so.
        receiver.secret = old
        refused = await ping(notifications, case.org, webhook_id)
        assert (refused["ok"], refused["status_code"]) == (False, 401)

    listed = await notifications.get("/webhooks", headers=case.employer)
    [shown] = [w for w in listed.json()["items"] if w["webhook_id"] == webhook_id]
    assert shown["previous_secret_valid_until"] is None


async def test_rotating_to_the_secret_in_use_is_refused(notifications: httpx.AsyncClient) -> None:
    case = new_case()
    async with webhook_receiver(new_secret()) as receiver:
        webhook = await register_webhook(notifications, case.org, receiver)
        response = await notifications.post(
            f"/webhooks/{webhook['webhook_id']}/secret",
            json={"secret": receiver.secret},
            headers=case.employer,
        )
    problem = assert_problem(response, 422)
    assert problem["errors"][0]["field"] == "secret"


async def test_another_org_cannot_rotate_a_webhooks_secret(
    notifications: httpx.AsyncClient,
) -> None:
    case = new_case()
    async with webhook_receiver(new_secret()) as receiver:
        webhook = await register_webhook(notifications, case.org, receiver)
        response = await notifications.post(
            f"/webhooks/{webhook['webhook_id']}/secret",
            json={"secret": new_secret()},
            headers=new_case().employer,
        )
        assert_problem(response, 404)
        # The owner's receiver still verifies with the only secret there is.
        assert (await ping(notifications, case.org, webhook["webhook_id"]))["ok"] is True
        assert signatures_in(last(receiver).headers[SIGNATURE_HEADER]) == 1

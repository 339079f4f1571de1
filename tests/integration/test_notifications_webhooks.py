"""Webhook deliveries on the real broker and database, to real webhook receivers on 127.0.0.1
(tests/support/receivers.py, which check the signature the way an integrator would).

A receiver that fails twice then succeeds gets the signed event once with three recorded
attempts; one that always fails ends `failed` after the last attempt; another org's receiver
gets nothing; an org's webhook follows the default channels of each kind. The retry rules
themselves are tested without servers in tests/unit/notifications/test_delivery_worker.py.

Every scenario is set off before the first test, then left to settle once (`settled`): a
duplicate delivery, event or request would have shown by then.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from hirestream.shared.events.applications import ApplicationSubmitted
from hirestream.shared.events.envelope import CloudEvent
from tests.conftest import unique_db
from tests.support.kafka import Record
from tests.support.notifications import (
    Case,
    announce_posting,
    application_submitted,
    delivered_about,
    deliveries,
    new_case,
    new_secret,
    publish,
    read_delivered,
    register_webhook,
    running_notifications,
    tag,
    wait_for_delivered,
    wait_for_final_delivery,
)
from tests.support.receivers import WebhookReceiver, signature_verifies, webhook_receiver
from tests.support.servers import Servers

pytestmark = pytest.mark.integration

MAX_ATTEMPTS = 3
# Longer than the outbox's inline grace (5 s) and than a redelivered record takes to be
# handled: a duplicate, if there is one, has shown up by then.
SETTLE_S = 6.0

Json = dict[str, Any]


@pytest.fixture(scope="module")
def notifications_db() -> str:
    return unique_db("notifications")


@pytest.fixture(scope="module")
async def notifications(
    base_env: dict[str, str], notifications_db: str
) -> AsyncIterator[httpx.AsyncClient]:
    async for client in running_notifications(
        base_env,
        notifications_db,
        webhook_allow_private=True,
        delivery_backoff_initial_s=0.2,
        delivery_backoff_max_s=1,
        delivery_max_attempts=MAX_ATTEMPTS,
    ):
        yield client


@dataclass(frozen=True)
class Delivered:
    """An application to an org whose webhook points at `receiver`, and its final delivery."""

    case: Case
    event: CloudEvent[ApplicationSubmitted]
    receiver: WebhookReceiver
    webhook_id: str
    delivery: Json


async def apply_to_org_with_webhook(
    client: httpx.AsyncClient, servers: Servers, receiver: WebhookReceiver, name: str
) -> Delivered:
    case = new_case(name)
    webhook = await register_webhook(client, case.org, receiver)
    event = application_submitted(case)
    await publish(servers, event)
    delivery = await wait_for_final_delivery(client, case.org, webhook["webhook_id"])
    return Delivered(case, event, receiver, webhook["webhook_id"], delivery)


@pytest.fixture(scope="module")
async def failed_twice_then_delivered(
    notifications: httpx.AsyncClient, servers: Servers
) -> AsyncIterator[Delivered]:
    """An org's receiver answers 500 twice, then 200; an application to the org follows."""
    async with webhook_receiver(new_secret(), fail_first=2) as receiver:
        yield await apply_to_org_with_webhook(notifications, servers, receiver, "Hedy Lamarr")


@pytest.fixture(scope="module")
async def always_failing(
    notifications: httpx.AsyncClient, servers: Servers
) -> AsyncIterator[Delivered]:
    """An org's receiver answers 500 to every request."""
    async with webhook_receiver(new_secret(), always_fail=True) as receiver:
        delivered = await apply_to_org_with_webhook(
            notifications, servers, receiver, "Barbara Liskov"
        )
        await wait_for_delivered(servers, delivered.event.id, expected=4)
        yield delivered


@dataclass(frozen=True)
class TwoOrgs:
    ours: Delivered
    theirs: WebhookReceiver
    their_org: str
    their_webhook_id: str


@pytest.fixture(scope="module")
async def another_orgs_webhook(
    notifications: httpx.AsyncClient, servers: Servers
) -> AsyncIterator[TwoOrgs]:
    """Two orgs with a webhook each; an application to the first."""
    their_org = f"globex-{tag()}"
    async with (
        webhook_receiver(new_secret()) as ours,
        webhook_receiver(new_secret()) as theirs,
    ):
        other = await register_webhook(notifications, their_org, theirs)
        delivered = await apply_to_org_with_webhook(notifications, servers, ours, "Radia Perlman")
        yield TwoOrgs(delivered, theirs, their_org, other["webhook_id"])


@pytest.fixture(scope="module")
async def both_kinds_wanted(
    notifications: httpx.AsyncClient,
    servers: Servers,
    mongo: AsyncMongoClient[Json],
    notifications_db: str,
) -> AsyncIterator[WebhookReceiver]:
    """An org's webhook asks for postings and applications; no preferences saved. The org
    announces a posting, and an application to it follows."""
    case = new_case("Frances Allen")
    async with webhook_receiver(new_secret()) as receiver:
        webhook = await register_webhook(
            notifications, case.org, receiver, "posting.created", "application.submitted"
        )
        await announce_posting(servers, mongo, notifications_db, case)
        await publish(servers, application_submitted(case))
        await wait_for_final_delivery(notifications, case.org, webhook["webhook_id"])
        yield receiver


@pytest.fixture(scope="module")
async def settled(
    servers: Servers,
    failed_twice_then_delivered: Delivered,
    always_failing: Delivered,
    another_orgs_webhook: TwoOrgs,
    both_kinds_wanted: WebhookReceiver,
) -> list[Record]:
    """Once every scenario above delivered: the `notification.delivered` topic, read for as
    long as a duplicate delivery or event would take to show."""
    return await read_delivered(servers, settle_s=SETTLE_S)


# --- a receiver failing twice, then accepting ---------------------------------------------


async def test_a_receiver_failing_twice_gets_the_signed_event_on_the_third_attempt(
    failed_twice_then_delivered: Delivered,
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
    failed_twice_then_delivered: Delivered,
) -> None:
    receiver = failed_twice_then_delivered.receiver
    assert len({request.body for request in receiver.requests}) == 1
    assert all(request.signature_ok for request in receiver.requests)


async def test_the_delivery_log_shows_one_delivery_with_three_attempts(
    notifications: httpx.AsyncClient, failed_twice_then_delivered: Delivered
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
    failed_twice_then_delivered: Delivered, settled: list[Record]
) -> None:
    flaky = failed_twice_then_delivered
    delivered = delivered_about(settled, flaky.event.id)
    webhook = [data for data in delivered if data["channel"] == "webhook"]
    assert len(webhook) == 1
    assert webhook[0]["outcome"] == "delivered"
    assert webhook[0]["attempts"] == 3
    assert webhook[0]["recipient"] == f"webhook:{flaky.webhook_id}"


# --- a receiver that always fails ---------------------------------------------------------


async def test_a_receiver_that_always_fails_ends_failed_after_the_last_attempt(
    always_failing: Delivered, settled: list[Record]
) -> None:
    delivery, receiver = always_failing.delivery, always_failing.receiver
    assert delivery["status"] == "failed"
    assert [attempt["ok"] for attempt in delivery["attempts"]] == [False] * MAX_ATTEMPTS
    assert len(receiver.requests) == MAX_ATTEMPTS
    delivered = delivered_about(settled, always_failing.event.id)
    [reported] = [data for data in delivered if data["channel"] == "webhook"]
    assert reported["outcome"] == "failed"
    assert reported["attempts"] == MAX_ATTEMPTS
    assert reported["error"] == "webhook answered 500"


# --- whose webhooks get what --------------------------------------------------------------


async def test_webhooks_of_another_org_do_not_receive_the_event(
    notifications: httpx.AsyncClient, another_orgs_webhook: TwoOrgs, settled: list[Record]
) -> None:
    two = another_orgs_webhook
    assert len(two.ours.receiver.accepted) == 1
    assert two.theirs.requests == []
    assert await deliveries(notifications, two.their_org, two.their_webhook_id) == []


async def test_an_org_webhook_follows_the_default_channels_of_each_kind(
    both_kinds_wanted: WebhookReceiver, settled: list[Record]
) -> None:
    # No preferences saved: posting.created goes to no webhook by default, an application
    # does (domain.DEFAULT_CHANNELS), though the webhook asked for both kinds.
    kinds = [json.loads(request.body)["type"] for request in both_kinds_wanted.accepted]
    assert kinds == ["application.submitted"]

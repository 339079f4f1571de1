"""Webhooks for integrators: the signature with every valid secret during a rotation's overlap
and the current one alone after it, the rotation itself, the ping and the redelivery of a
failed delivery. The domain at fixed times, the use cases on in-memory fakes."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from hirestream.notifications import services
from hirestream.notifications.domain import (
    MAX_RETIRING_SECRETS,
    DeliveryAttempt,
    DeliveryFailed,
    DeliveryStatus,
    RetiringSecret,
    Webhook,
    WebhookRefused,
    WebhookRegistration,
    sign,
    sign_all,
)
from hirestream.shared.events.notifications import Channel
from hirestream.shared.events.types import utc_now
from hirestream.shared.identity import Principal, Role
from hirestream.shared.service_layer.errors import Conflict, InvalidRequest, NotFound
from tests.support.notifications import ADMIN, new_case, registration, stored_notification
from tests.support.notifications_fakes import FakeWebhookPoster, NotificationsFakes

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
OVERLAP = timedelta(hours=24)
OLD, NEW, NEWER = "whsec-old-3f9a1c7e5b2d4f60", "whsec-new-8d1e5b3c9a7f2064", "whsec-newer-0a1b2c3d"
HOOK_URL = "http://127.0.0.1:9/hooks"
BODY = b'{"id":"e1","type":"application.submitted"}'


def hex_hmac(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def webhook(secret: str = OLD, previous: list[RetiringSecret] | None = None) -> Webhook:
    return Webhook(
        url="https://hooks.acme.example/in",
        event_types=["application.submitted"],
        secret=secret,
        webhook_id="6650f1c2e4b0a1b2c3d4e5f6",
        owner="org:acme",
        org="acme",
        created_at=NOW - timedelta(days=30),
        previous_secrets=previous or [],
    )


# ---------------------------------------------------------------------------- the signature


def test_one_secret_gives_one_v1_as_before() -> None:
    assert sign_all([OLD], 1_795_880_000, BODY) == sign(OLD, 1_795_880_000, BODY)
    assert sign(OLD, 1_795_880_000, BODY) == (
        f"t=1795880000,v1={hex_hmac(OLD, 1_795_880_000, BODY)}"
    )


def test_during_the_overlap_each_valid_secret_signs_the_current_first() -> None:
    header = sign_all([NEW, OLD], 1_795_880_000, BODY)
    assert header == (
        f"t=1795880000,v1={hex_hmac(NEW, 1_795_880_000, BODY)},"
        f"v1={hex_hmac(OLD, 1_795_880_000, BODY)}"
    )


def test_a_rotated_webhook_signs_with_both_secrets_until_the_overlap_ends() -> None:
    rotated = webhook(NEW, webhook().retiring_after_rotation(now=NOW, overlap=OVERLAP))
    assert rotated.signing_secrets(NOW) == [NEW, OLD]
    assert rotated.signing_secrets(NOW + OVERLAP - timedelta(seconds=1)) == [NEW, OLD]
    assert rotated.previous_valid_until(NOW) == NOW + OVERLAP


def test_after_the_overlap_only_the_new_secret_signs() -> None:
    rotated = webhook(NEW, webhook().retiring_after_rotation(now=NOW, overlap=OVERLAP))
    assert rotated.signing_secrets(NOW + OVERLAP) == [NEW]
    assert rotated.signing_secrets(NOW + OVERLAP + timedelta(days=1)) == [NEW]
    assert rotated.previous_valid_until(NOW + OVERLAP) is None


def test_a_zero_overlap_retires_the_old_secret_at_once() -> None:
    assert webhook().retiring_after_rotation(now=NOW, overlap=timedelta(0)) == []


def test_rotating_again_keeps_the_still_valid_former_secrets_newest_first() -> None:
    once = webhook(NEW, webhook().retiring_after_rotation(now=NOW, overlap=OVERLAP))
    later = NOW + timedelta(hours=1)
    twice = webhook(NEWER, once.retiring_after_rotation(now=later, overlap=OVERLAP))
    assert twice.signing_secrets(later) == [NEWER, NEW, OLD]
    # The first overlap ends first.
    assert twice.signing_secrets(NOW + OVERLAP) == [NEWER, NEW]


def test_expired_former_secrets_are_dropped_and_at_most_a_few_are_kept() -> None:
    expired = RetiringSecret(secret="whsec-long-gone-000000", valid_until=NOW - timedelta(days=1))
    valid = [
        RetiringSecret(secret=f"whsec-valid-{n:012d}", valid_until=NOW + timedelta(hours=n + 1))
        for n in range(MAX_RETIRING_SECRETS)
    ]
    retiring = webhook(previous=[expired, *valid]).retiring_after_rotation(now=NOW, overlap=OVERLAP)
    assert len(retiring) == MAX_RETIRING_SECRETS
    assert retiring[0].secret == OLD
    assert expired not in retiring


def test_webhooks_cannot_subscribe_to_posting_closed() -> None:
    with pytest.raises(ValidationError, match="unknown event types"):
        WebhookRegistration(
            url="https://hooks.acme.example/in",
            event_types=["posting.closed"],
            secret="whsec-3f9a1c7e5b2d4f60",
        )


# ------------------------------------------------------------------------------ the rotation


@pytest.fixture
def fakes() -> NotificationsFakes:
    return NotificationsFakes()


async def registered(fakes: NotificationsFakes, org: str, secret: str = OLD) -> Webhook:
    return await fakes.webhooks.create(f"org:{org}", org, registration(HOOK_URL, secret=secret))


async def test_rotating_keeps_the_old_secret_signing_for_the_overlap(
    fakes: NotificationsFakes,
) -> None:
    case = new_case()
    hook = await registered(fakes, case.org)

    rotated = await services.rotate_webhook_secret(
        case.employer_caller, hook.webhook_id, NEW, fakes.uow(), overlap=OVERLAP
    )

    assert rotated.secret == NEW
    assert rotated.signing_secrets(utc_now()) == [NEW, OLD]
    valid_until = rotated.previous_valid_until(utc_now())
    assert valid_until is not None
    assert timedelta(hours=23) < valid_until - utc_now() <= OVERLAP
    assert (await fakes.webhooks.by_id(hook.webhook_id)) == rotated


async def test_only_the_owning_org_rotates_a_webhooks_secret(fakes: NotificationsFakes) -> None:
    case, other = new_case(), new_case()
    hook = await registered(fakes, case.org)
    for caller in (other.employer_caller, ADMIN):
        with pytest.raises(NotFound):
            await services.rotate_webhook_secret(
                caller, hook.webhook_id, NEW, fakes.uow(), overlap=OVERLAP
            )
    assert (await fakes.webhooks.by_id(hook.webhook_id)) == hook


@pytest.mark.parametrize("again", [OLD, NEW])
async def test_a_secret_in_use_is_refused_as_the_new_one(
    fakes: NotificationsFakes, again: str
) -> None:
    case = new_case()
    hook = await registered(fakes, case.org)
    await services.rotate_webhook_secret(
        case.employer_caller, hook.webhook_id, NEW, fakes.uow(), overlap=OVERLAP
    )
    with pytest.raises(InvalidRequest, match="differ"):
        await services.rotate_webhook_secret(
            case.employer_caller, hook.webhook_id, again, fakes.uow(), overlap=OVERLAP
        )


async def test_a_rotation_that_lost_a_race_is_a_conflict(fakes: NotificationsFakes) -> None:
    case = new_case()
    hook = await registered(fakes, case.org)
    first = fakes.webhooks.get

    async def read_then_rotated_meanwhile(owner: str, webhook_id: str) -> Webhook | None:
        found = await first(owner, webhook_id)
        await fakes.webhooks.replace_secret(
            owner, webhook_id, expected=OLD, secret=NEWER, retiring=[]
        )
        return found

    fakes.webhooks.get = read_then_rotated_meanwhile  # type: ignore[method-assign]
    with pytest.raises(Conflict):
        await services.rotate_webhook_secret(
            case.employer_caller, hook.webhook_id, NEW, fakes.uow(), overlap=OVERLAP
        )
    stored = await fakes.webhooks.by_id(hook.webhook_id)
    assert stored is not None
    assert stored.secret == NEWER


async def test_deliveries_are_signed_with_every_valid_secret(fakes: NotificationsFakes) -> None:
    case = new_case()
    hook = await registered(fakes, case.org)
    await services.rotate_webhook_secret(
        case.employer_caller, hook.webhook_id, NEW, fakes.uow(), overlap=OVERLAP
    )
    poster = FakeWebhookPoster()
    await services.ping_webhook(case.employer_caller, hook.webhook_id, fakes.uow(), poster=poster)
    assert poster.signed_with == [[NEW, OLD]]


# ---------------------------------------------------------------------------------- the ping


class AnsweringPoster(FakeWebhookPoster):
    """A receiver that answers `status`, or cannot be reached (`status` None)."""

    def __init__(self, status: int | None) -> None:
        super().__init__()
        self.status = status

    async def send(self, url: str, secrets: object, payload: bytes) -> int:
        self.posts.append((url, "", payload))
        if self.status is None:
            raise DeliveryFailed("webhook: ConnectError")
        if not 200 <= self.status < 300:
            raise WebhookRefused(self.status)
        return self.status


async def test_a_ping_sends_a_signed_test_event_and_reports_the_receivers_status(
    fakes: NotificationsFakes,
) -> None:
    case = new_case()
    hook = await registered(fakes, case.org)
    poster = FakeWebhookPoster()

    result = await services.ping_webhook(
        case.employer_caller, hook.webhook_id, fakes.uow(), poster=poster
    )

    assert (result.attempt.ok, result.attempt.status_code, result.attempt.error) == (
        True,
        200,
        None,
    )
    [(url, secret, payload)] = poster.posts
    assert (url, secret) == (HOOK_URL, OLD)
    event = json.loads(payload)
    assert event["type"] == "webhook.ping"
    assert event["id"] == result.event_id
    assert event["subject"] == hook.webhook_id
    assert event["source"] == "hirestream/notifications"
    assert event["data"]["webhook_id"] == hook.webhook_id
    assert fakes.notifications.stored == {}  # nothing recorded: it is a test


@pytest.mark.parametrize(
    ("status", "error"),
    [(410, "webhook answered 410"), (500, "webhook answered 500"), (None, "webhook: ConnectError")],
)
async def test_a_ping_the_receiver_refuses_reports_why(
    fakes: NotificationsFakes, status: int | None, error: str
) -> None:
    case = new_case()
    hook = await registered(fakes, case.org)
    result = await services.ping_webhook(
        case.employer_caller, hook.webhook_id, fakes.uow(), poster=AnsweringPoster(status)
    )
    assert (result.attempt.ok, result.attempt.status_code, result.attempt.error) == (
        False,
        status,
        error,
    )


async def test_only_the_owner_pings_a_webhook(fakes: NotificationsFakes) -> None:
    case, other = new_case(), new_case()
    hook = await registered(fakes, case.org)
    poster = FakeWebhookPoster()
    for caller in (other.employer_caller, ADMIN, Principal("admin-2", Role.ADMIN)):
        with pytest.raises(NotFound):
            await services.ping_webhook(caller, hook.webhook_id, fakes.uow(), poster=poster)
    assert poster.posts == []


# ---------------------------------------------------------------------------- the redelivery

LEASE = timedelta(seconds=60)


async def failed_delivery(
    fakes: NotificationsFakes, hook: Webhook, *, status: DeliveryStatus = DeliveryStatus.FAILED
) -> str:
    delivery = stored_notification(
        f"webhook:{hook.webhook_id}",
        "app-1",
        channel=Channel.WEBHOOK,
        webhook_id=hook.webhook_id,
        payload='{"id":"event-1","type":"application.submitted"}',
        status=status,
        delivery_due_at=None,
        attempts=[
            DeliveryAttempt(number=n, at=utc_now(), ok=False, error="webhook answered 500")
            for n in (1, 2)
        ],
    )
    fakes.notifications.put(delivery)
    return delivery.notification_id


async def test_a_failed_delivery_is_sent_again_as_a_new_attempt_with_the_same_event(
    fakes: NotificationsFakes,
) -> None:
    case = new_case()
    hook = await registered(fakes, case.org)
    delivery_id = await failed_delivery(fakes, hook)
    poster = FakeWebhookPoster()

    redelivered = await services.redeliver(
        case.employer_caller, hook.webhook_id, delivery_id, fakes.uow(), poster=poster, lease=LEASE
    )

    assert redelivered.status is DeliveryStatus.DELIVERED
    assert [(a.number, a.ok, a.status_code) for a in redelivered.attempts] == [
        (1, False, None),
        (2, False, None),
        (3, True, 200),
    ]
    stored = fakes.notifications.stored[delivery_id]
    assert stored.status is DeliveryStatus.DELIVERED
    assert stored.delivery_due_at is None
    assert len(stored.attempts) == 3
    [(_, _, payload)] = poster.posts
    assert json.loads(payload)["id"] == "event-1"  # receivers deduplicate on it
    assert fakes.publisher.events == []  # its one notification.delivered was sent already


async def test_a_redelivery_that_fails_again_stays_failed_with_the_receivers_status(
    fakes: NotificationsFakes,
) -> None:
    case = new_case()
    hook = await registered(fakes, case.org)
    delivery_id = await failed_delivery(fakes, hook)

    redelivered = await services.redeliver(
        case.employer_caller,
        hook.webhook_id,
        delivery_id,
        fakes.uow(),
        poster=AnsweringPoster(503),
        lease=LEASE,
    )

    assert redelivered.status is DeliveryStatus.FAILED
    assert (redelivered.attempts[-1].number, redelivered.attempts[-1].status_code) == (3, 503)
    assert fakes.notifications.stored[delivery_id].status is DeliveryStatus.FAILED


@pytest.mark.parametrize("status", [DeliveryStatus.PENDING, DeliveryStatus.DELIVERED])
async def test_only_a_failed_delivery_is_sent_again(
    fakes: NotificationsFakes, status: DeliveryStatus
) -> None:
    case = new_case()
    hook = await registered(fakes, case.org)
    delivery_id = await failed_delivery(fakes, hook, status=status)
    poster = FakeWebhookPoster()
    with pytest.raises(Conflict, match=status.value):
        await services.redeliver(
            case.employer_caller,
            hook.webhook_id,
            delivery_id,
            fakes.uow(),
            poster=poster,
            lease=LEASE,
        )
    assert poster.posts == []


async def test_a_delivery_of_another_webhook_or_org_is_not_found(
    fakes: NotificationsFakes,
) -> None:
    case, other = new_case(), new_case()
    hook = await registered(fakes, case.org)
    their_hook = await registered(fakes, other.org)
    delivery_id = await failed_delivery(fakes, hook)
    poster = FakeWebhookPoster()
    attempts = [
        (other.employer_caller, hook.webhook_id, delivery_id),  # another org's webhook
        (other.employer_caller, their_hook.webhook_id, delivery_id),  # not that webhook's
        (case.employer_caller, hook.webhook_id, "no-such-delivery"),
    ]
    for caller, webhook_id, one in attempts:
        with pytest.raises(NotFound):
            await services.redeliver(
                caller, webhook_id, one, fakes.uow(), poster=poster, lease=LEASE
            )
    assert poster.posts == []
    assert fakes.notifications.stored[delivery_id].status is DeliveryStatus.FAILED

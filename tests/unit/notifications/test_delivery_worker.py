"""The delivery worker on in-memory fakes of the notification store, mailer, webhook poster and
broker: its retry rules (backoff, a bounded number of attempts, one final outcome announced),
and its hand-over queue (what it keeps in memory, when it leases again, how many deliveries it
attempts at once)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from hirestream.notifications import delivery
from hirestream.notifications.delivery import DeliverySchedule, DeliveryWorker
from hirestream.notifications.domain import DeliveryStatus, Notification, delivered_event_id
from hirestream.shared.events.envelope import CloudEvent
from hirestream.shared.events.notifications import Channel, DeliveryOutcome
from hirestream.shared.events.types import utc_now
from tests.support.fakes import RecordingPublisher
from tests.support.notifications import (
    registration,
    stored_notification,
)
from tests.support.notifications_fakes import (
    FakeMailer,
    FakeNotifications,
    FakeWebhookPoster,
    FakeWebhooks,
)

ADDRESS = "ada.lovelace@example.com"
THREE_TRIES = DeliverySchedule(max_attempts=3, initial_backoff_s=1.0, max_backoff_s=60.0)


def pending(
    notification_id: str,
    *,
    leased_until: datetime,
    address: str | None = ADDRESS,
    webhook_id: str | None = None,
) -> Notification:
    """An email delivery (a webhook one with `webhook_id`) as its use case stored it."""
    if webhook_id is None:
        return stored_notification(
            "user:cand-1",
            "a1",
            channel=Channel.EMAIL,
            notification_id=notification_id,
            email=address,
            delivery_due_at=leased_until,
        )
    return stored_notification(
        f"webhook:{webhook_id}",
        "a1",
        channel=Channel.WEBHOOK,
        notification_id=notification_id,
        webhook_id=webhook_id,
        payload='{"id":"e1"}',
        delivery_due_at=leased_until,
    )


def worker_on(
    queue: FakeNotifications,
    publisher: Any,
    *,
    mailer: FakeMailer | None = None,
    poster: FakeWebhookPoster | None = None,
    webhooks: FakeWebhooks | None = None,
    schedule: DeliverySchedule | None = None,
    poll_interval_s: float = 1.0,
) -> DeliveryWorker:
    return DeliveryWorker(
        queue,
        mailer or FakeMailer(),
        poster or FakeWebhookPoster(),
        (webhooks or FakeWebhooks()).by_id,
        publisher,
        source="hirestream/notifications",
        schedule=schedule,
        poll_interval_s=poll_interval_s,
    )


def handed(queue: FakeNotifications, worker: DeliveryWorker, count: int) -> list[str]:
    """`count` email deliveries stored leased to this worker, and handed to it."""
    leased_until, hand_over = worker.due_at_for_new()
    assert hand_over
    made = [pending(f"n{i}", leased_until=leased_until) for i in range(count)]
    queue.put(*made)
    worker.hand_over(made)
    return [n.notification_id for n in made]


async def run_until_recorded(worker: DeliveryWorker, queue: FakeNotifications, count: int) -> None:
    worker.start()
    try:
        for _ in range(500):
            if len(queue.recorded) >= count:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"recorded {len(queue.recorded)} of {count}")
    finally:
        await worker.stop()


def jitter(monkeypatch: pytest.MonkeyPatch, value: float) -> None:
    """The worker's random source, fixed: each wait is `value` times its cap."""
    monkeypatch.setattr(delivery, "random", SimpleNamespace(random=lambda: value))


# ---------------------------------------------------------------------------- retry rules


async def test_a_failing_delivery_is_retried_with_backoff_then_failed_and_announced_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    jitter(monkeypatch, 0.5)
    queue, publisher, mailer = (
        FakeNotifications(),
        RecordingPublisher(),
        FakeMailer(always_fail=True),
    )
    worker = worker_on(queue, publisher, mailer=mailer, schedule=THREE_TRIES)
    queue.put(pending("n0", leased_until=utc_now() + timedelta(minutes=1)))

    for number, wait_s in [(1, 0.5), (2, 1.0)]:  # half of 1 s, then of 2 s
        before = utc_now()
        await worker.attempt(queue.stored["n0"], now=before)
        stored = queue.stored["n0"]
        assert [a.number for a in stored.attempts] == list(range(1, number + 1))
        assert stored.status is DeliveryStatus.PENDING
        due = stored.delivery_due_at
        assert due is not None
        assert before + timedelta(seconds=wait_s) <= due <= utc_now() + timedelta(seconds=wait_s)
        assert publisher.events == []  # no outcome before the last attempt

    await worker.attempt(queue.stored["n0"], now=utc_now())
    final = queue.stored["n0"]
    assert final.status is DeliveryStatus.FAILED
    assert final.delivery_due_at is None
    assert [a.ok for a in final.attempts] == [False, False, False]
    assert queue.recorded == [("n0", None), ("n0", None), ("n0", DeliveryStatus.FAILED)]
    assert mailer.tries == 3
    [announced] = publisher.events
    assert announced.id == delivered_event_id("n0")
    assert announced.data.outcome is DeliveryOutcome.FAILED
    assert announced.data.attempts == 3
    assert announced.data.error == "smtp: SMTPRecipientsRefused"


async def test_a_delivery_that_succeeds_on_a_later_attempt_is_delivered_and_announced_once() -> (
    None
):
    queue, publisher, webhooks = FakeNotifications(), RecordingPublisher(), FakeWebhooks()
    poster = FakeWebhookPoster(fail_first=1)
    hook = await webhooks.create("org:acme", "acme", registration("http://127.0.0.1:9/hooks"))
    worker = worker_on(queue, publisher, poster=poster, webhooks=webhooks, schedule=THREE_TRIES)
    leased_until = utc_now() + timedelta(minutes=1)
    queue.put(pending("n0", leased_until=leased_until, webhook_id=hook.webhook_id))

    for _ in range(2):
        await worker.attempt(queue.stored["n0"], now=utc_now())

    stored = queue.stored["n0"]
    assert stored.status is DeliveryStatus.DELIVERED
    assert [(a.number, a.ok, a.status_code) for a in stored.attempts] == [
        (1, False, None),
        (2, True, 200),
    ]
    assert stored.attempts[0].error == "webhook answered 500"
    assert poster.posts == [(hook.url, hook.secret, b'{"id":"e1"}')] * 2  # the same body
    [announced] = publisher.events
    assert announced.data.outcome is DeliveryOutcome.DELIVERED
    assert announced.data.attempts == 2
    assert announced.data.recipient == f"webhook:{hook.webhook_id}"


async def test_a_delivery_to_a_deleted_webhook_fails_at_once_without_a_request() -> None:
    queue, publisher, poster = FakeNotifications(), RecordingPublisher(), FakeWebhookPoster()
    worker = worker_on(queue, publisher, poster=poster, schedule=THREE_TRIES)
    leased_until = utc_now() + timedelta(minutes=1)
    queue.put(pending("n0", leased_until=leased_until, webhook_id="gone"))

    await worker.attempt(queue.stored["n0"], now=utc_now())

    assert queue.stored["n0"].status is DeliveryStatus.FAILED  # no retry can bring it back
    assert len(queue.stored["n0"].attempts) == 1
    assert poster.posts == []
    [announced] = publisher.events
    assert announced.data.outcome is DeliveryOutcome.FAILED
    assert announced.data.error == "the webhook was deleted"


async def test_an_email_whose_address_was_erased_fails_at_once_without_sending() -> None:
    queue, publisher, mailer = FakeNotifications(), RecordingPublisher(), FakeMailer()
    worker = worker_on(queue, publisher, mailer=mailer, schedule=THREE_TRIES)
    queue.put(pending("n0", leased_until=utc_now() + timedelta(minutes=1), address=None))

    await worker.attempt(queue.stored["n0"], now=utc_now())

    assert mailer.tries == 0
    assert queue.stored["n0"].status is DeliveryStatus.FAILED
    assert [a.error for a in queue.stored["n0"].attempts] == ["no address to send to (erased)"]
    [announced] = publisher.events
    assert "@" not in announced.model_dump_json()  # the event names nobody's address


async def test_the_running_worker_retries_a_handed_delivery_when_due_until_it_is_delivered() -> (
    None
):
    queue, publisher, mailer = FakeNotifications(), RecordingPublisher(), FakeMailer(fail_first=2)
    schedule = DeliverySchedule(max_attempts=3, initial_backoff_s=0.02, max_backoff_s=0.05)
    worker = worker_on(queue, publisher, mailer=mailer, schedule=schedule, poll_interval_s=0.01)
    handed(queue, worker, 1)

    await run_until_recorded(worker, queue, 3)

    assert queue.recorded == [("n0", None), ("n0", None), ("n0", DeliveryStatus.DELIVERED)]
    assert mailer.sent == [
        (
            ADDRESS,
            "Application sent: Senior Backend Developer",
            "We passed your application on to the employer.",
        )
    ]
    assert [event.data.attempts for event in publisher.events] == [3]


async def test_each_recorded_retry_brings_a_poll_forward_to_its_due_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    waits = [0.05, 0.25]  # then 10 s: no third retry falls due during the test
    monkeypatch.setattr(delivery, "backoff_s", lambda attempt, **_: waits.pop(0) if waits else 10)
    queue, publisher = FakeNotifications(), RecordingPublisher()
    # Without the retries, the next poll would be half a minute away.
    worker = worker_on(queue, publisher, mailer=FakeMailer(always_fail=True), poll_interval_s=30)
    handed(queue, worker, 2)
    worker.start()
    try:
        await asyncio.sleep(0.6)
    finally:
        await worker.stop()
    # Each attempted when handed, then again by the poll at its retry's due time.
    assert queue.recorded == [("n0", None), ("n1", None)] * 2
    assert queue.polls == 3  # at start, then when each retry fell due


# ---------------------------------------------------------------------- the hand-over queue


async def test_beyond_the_held_documents_deliveries_are_read_by_id_together_when_their_turn_comes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(delivery, "HELD_LIMIT", 2)
    queue, publisher = FakeNotifications(), RecordingPublisher()
    worker = worker_on(queue, publisher)
    ids = handed(queue, worker, 5)
    await run_until_recorded(worker, queue, 5)
    # One read for the round; the two kept in memory needed none.
    assert queue.reads == [["n2", "n3", "n4"]]
    assert queue.claims == []  # the lease still held: no new claim
    assert sorted(event.data.notification_id for event in publisher.events) == ids
    assert {event.id for event in publisher.events} == {delivered_event_id(i) for i in ids}


async def test_a_delivery_another_worker_took_after_its_lease_is_skipped() -> None:
    queue, publisher = FakeNotifications(), RecordingPublisher()
    worker = worker_on(queue, publisher)
    ended = utc_now() + timedelta(seconds=1)  # too little left: leased again before the attempt
    made = [pending(f"n{i}", leased_until=ended) for i in range(3)]
    queue.put(*made)
    # Another worker leased n1 when the lease it was handed with ran out.
    queue.put(made[1].model_copy(update={"delivery_due_at": ended + timedelta(minutes=1)}))
    worker.hand_over(made)
    await run_until_recorded(worker, queue, 2)
    await asyncio.sleep(0.05)
    assert sorted(queue.claims) == ["n0", "n1", "n2"]
    assert sorted(notification_id for notification_id, _ in queue.recorded) == ["n0", "n2"]


async def test_a_lease_about_to_end_is_renewed_before_the_attempt() -> None:
    queue, publisher = FakeNotifications(), RecordingPublisher()
    worker = worker_on(queue, publisher)
    soon = pending("n0", leased_until=utc_now() + timedelta(seconds=5))
    queue.put(soon)
    worker.hand_over([soon])
    await run_until_recorded(worker, queue, 1)
    assert queue.claims == ["n0"]


async def test_handed_deliveries_are_attempted_several_at_once() -> None:
    queue, publisher, mailer = FakeNotifications(), RecordingPublisher(), FakeMailer(takes_s=0.01)
    worker = worker_on(queue, publisher, mailer=mailer)
    handed(queue, worker, 40)
    await run_until_recorded(worker, queue, 40)
    assert mailer.most_in_flight == delivery.SEND_CONCURRENCY
    assert {status for _, status in queue.recorded} == {DeliveryStatus.DELIVERED}


async def test_an_outcome_whose_event_cannot_be_published_keeps_it_in_the_outbox() -> None:
    async def broker_away(event: CloudEvent[Any]) -> None:
        raise ConnectionError("broker unreachable")

    queue = FakeNotifications()
    worker = worker_on(queue, broker_away)
    handed(queue, worker, 1)
    await run_until_recorded(worker, queue, 1)
    assert queue.recorded == [("n0", DeliveryStatus.DELIVERED)]
    assert [event.id for event in queue.owed] == [delivered_event_id("n0")]


async def test_a_published_outcome_is_recorded_without_an_outbox_entry() -> None:
    queue, publisher = FakeNotifications(), RecordingPublisher()
    worker = worker_on(queue, publisher)
    handed(queue, worker, 1)
    await run_until_recorded(worker, queue, 1)
    assert queue.owed == []
    assert [event.id for event in publisher.events] == [delivered_event_id("n0")]

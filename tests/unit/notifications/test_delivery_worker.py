"""The delivery worker's hand-over queue: what it keeps in memory, when it leases again, and
how many deliveries it attempts at once (fakes for the store, relay and mailer)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import pytest

from hirestream.notifications import delivery
from hirestream.notifications.delivery import DeliveryWorker
from hirestream.notifications.domain import (
    DeliveryFailed,
    DeliveryStatus,
    Notification,
    delivered_event_id,
)
from hirestream.shared.events.envelope import CloudEvent
from hirestream.shared.events.notifications import Channel
from hirestream.shared.events.types import utc_now


class FakeStore:
    def __init__(self, taken_by_others: set[str]) -> None:
        self.taken_by_others = taken_by_others
        self.claims: list[str] = []
        self.reads: list[list[str]] = []  # one list per read
        self.polls = 0
        self.recorded: list[tuple[str, str | None]] = []
        self.owed: list[Any] = []  # events written to the outbox with an outcome

    async def claim(
        self, notification_id: str, *, due_at: datetime, until: datetime
    ) -> Notification | None:
        self.claims.append(notification_id)
        if notification_id in self.taken_by_others:
            return None
        return email(notification_id, leased_until=until)

    async def get_many(self, notification_ids: list[str]) -> dict[str, Notification]:
        self.reads.append(list(notification_ids))
        until = utc_now() + timedelta(minutes=1)
        return {
            notification_id: email(notification_id, leased_until=until)
            for notification_id in notification_ids
        }

    async def record_attempt(self, notification_id: str, attempt: Any, **outcome: Any) -> None:
        final = outcome["final_status"]
        self.recorded.append((notification_id, final.value if final else None))
        self.owed += outcome["owed"]

    async def claim_due(self, **_: Any) -> list[Notification]:
        self.polls += 1
        return []


class FakeBroker:
    def __init__(self) -> None:
        self.published: list[CloudEvent[Any]] = []

    async def publish(self, event: CloudEvent[Any]) -> None:
        self.published.append(event)


class CountingMailer:
    def __init__(self) -> None:
        self.in_flight = 0
        self.most_in_flight = 0

    async def send(self, to: str, title: str, body: str) -> None:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        await asyncio.sleep(0.01)
        self.in_flight -= 1


def email(notification_id: str, *, leased_until: datetime) -> Notification:
    return Notification(
        notification_id=notification_id,
        channel=Channel.EMAIL,
        email="c@example.com",
        title="t",
        body="b",
        recipient="user:c",
        kind="application.submitted",
        subject="a1",
        source_event_id="e1",
        created_at=utc_now(),
        status=DeliveryStatus.PENDING,
        delivery_due_at=leased_until,
    )


async def run_until_recorded(worker: DeliveryWorker, store: FakeStore, count: int) -> None:
    worker.start()
    try:
        for _ in range(500):
            if len(store.recorded) >= count:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"recorded {len(store.recorded)} of {count}")
    finally:
        await worker.stop()


async def test_beyond_the_held_documents_deliveries_are_read_by_id_together_when_their_turn_comes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(delivery, "HELD_LIMIT", 2)
    store, broker, mailer = FakeStore(taken_by_others=set()), FakeBroker(), CountingMailer()
    worker = DeliveryWorker(store, mailer, None, None, broker.publish, source="test")  # type: ignore[arg-type]
    leased_until, handed = worker.due_at_for_new()
    assert handed
    worker.hand_over([email(f"n{i}", leased_until=leased_until) for i in range(5)])
    await run_until_recorded(worker, store, 5)
    # One read for the round; the two kept in memory needed none.
    assert store.reads == [["n2", "n3", "n4"]]
    assert store.claims == []  # the lease still held: no new claim
    announced = sorted(event.data.notification_id for event in broker.published)
    assert announced == [f"n{i}" for i in range(5)]
    assert {event.id for event in broker.published} == {
        delivered_event_id(f"n{i}") for i in range(5)
    }


async def test_a_delivery_another_worker_took_after_its_lease_is_skipped() -> None:
    store, broker, mailer = FakeStore(taken_by_others={"n1"}), FakeBroker(), CountingMailer()
    worker = DeliveryWorker(store, mailer, None, None, broker.publish, source="test")  # type: ignore[arg-type]
    ended = utc_now() + timedelta(seconds=1)  # too little left: leased again before the attempt
    worker.hand_over([email(f"n{i}", leased_until=ended) for i in range(3)])
    await run_until_recorded(worker, store, 2)
    await asyncio.sleep(0.05)
    assert sorted(store.claims) == ["n0", "n1", "n2"]
    assert sorted(doc_id for doc_id, _ in store.recorded) == ["n0", "n2"]


async def test_a_lease_about_to_end_is_renewed_before_the_attempt() -> None:
    store, broker, mailer = FakeStore(taken_by_others=set()), FakeBroker(), CountingMailer()
    worker = DeliveryWorker(store, mailer, None, None, broker.publish, source="test")  # type: ignore[arg-type]
    worker.hand_over([email("n0", leased_until=utc_now() + timedelta(seconds=5))])
    await run_until_recorded(worker, store, 1)
    assert store.claims == ["n0"]


async def test_handed_deliveries_are_attempted_several_at_once() -> None:
    store, broker, mailer = FakeStore(taken_by_others=set()), FakeBroker(), CountingMailer()
    worker = DeliveryWorker(store, mailer, None, None, broker.publish, source="test")  # type: ignore[arg-type]
    leased_until, _ = worker.due_at_for_new()
    worker.hand_over([email(f"n{i}", leased_until=leased_until) for i in range(40)])
    await run_until_recorded(worker, store, 40)
    assert mailer.most_in_flight == delivery.SEND_CONCURRENCY
    assert all(status == "delivered" for _, status in store.recorded)


async def test_an_outcome_whose_event_cannot_be_published_keeps_it_in_the_outbox() -> None:
    async def broker_away(event: CloudEvent[Any]) -> None:
        raise ConnectionError("broker unreachable")

    store, mailer = FakeStore(taken_by_others=set()), CountingMailer()
    worker = DeliveryWorker(store, mailer, None, None, broker_away, source="test")  # type: ignore[arg-type]
    leased_until, _ = worker.due_at_for_new()
    worker.hand_over([email("n0", leased_until=leased_until)])
    await run_until_recorded(worker, store, 1)
    assert store.recorded == [("n0", "delivered")]
    assert [event.id for event in store.owed] == [delivered_event_id("n0")]


async def test_a_published_outcome_is_recorded_without_an_outbox_entry() -> None:
    store, broker, mailer = FakeStore(taken_by_others=set()), FakeBroker(), CountingMailer()
    worker = DeliveryWorker(store, mailer, None, None, broker.publish, source="test")  # type: ignore[arg-type]
    leased_until, _ = worker.due_at_for_new()
    worker.hand_over([email("n0", leased_until=leased_until)])
    await run_until_recorded(worker, store, 1)
    assert store.owed == []
    assert [event.id for event in broker.published] == [delivered_event_id("n0")]


class FailingMailer:
    async def send(self, to: str, title: str, body: str) -> None:
        raise DeliveryFailed("smtp: refused")


class Backoffs:
    """Retry waits in order: 0.05 s, then 0.25 s."""

    def __init__(self) -> None:
        self.waits = [0.05, 0.25]

    def __call__(self, attempt: int, **_: Any) -> float:
        return self.waits.pop(0)


async def test_each_recorded_retry_brings_a_poll_forward_to_its_due_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(delivery, "backoff_s", Backoffs())
    store, broker = FakeStore(taken_by_others=set()), FakeBroker()
    worker = DeliveryWorker(
        store,  # type: ignore[arg-type]
        FailingMailer(),  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        broker.publish,
        source="test",
        poll_interval_s=30.0,  # without the retries, the next poll would be half a minute away
    )
    leased_until, _ = worker.due_at_for_new()
    worker.hand_over([email(f"n{i}", leased_until=leased_until) for i in range(2)])
    worker.start()
    try:
        await asyncio.sleep(0.6)
    finally:
        await worker.stop()
    assert store.recorded == [("n0", None), ("n1", None)]  # retries, not final outcomes
    assert store.polls == 3  # at start, then when each retry fell due

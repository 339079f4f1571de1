"""The delivery worker's hand-over queue: what it keeps in memory, when it leases again, and
how many deliveries it attempts at once (fakes for the store, relay and mailer)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import pytest

from hirestream.notifications import delivery
from hirestream.notifications.delivery import DeliveryWorker
from hirestream.shared.events.types import utc_now


class FakeStore:
    def __init__(self, taken_by_others: set[str]) -> None:
        self.taken_by_others = taken_by_others
        self.claims: list[str] = []
        self.recorded: list[tuple[str, str | None]] = []

    async def claim(self, notification_id: str, *, due_at: datetime, until: datetime) -> Any:
        self.claims.append(notification_id)
        if notification_id in self.taken_by_others:
            return None
        return email(notification_id, leased_until=until)

    async def record_attempt(self, notification_id: str, attempt: Any, **outcome: Any) -> list[Any]:
        self.recorded.append((notification_id, outcome["final_status"]))
        return [{"id": f"event-of-{notification_id}"}]

    async def claim_due(self, **_: Any) -> list[Any]:
        return []


class FakeRelay:
    def __init__(self) -> None:
        self.notified: list[str] = []

    def notify(self, doc_id: str, *, written: list[Any]) -> None:
        self.notified.append(doc_id)


class CountingMailer:
    def __init__(self) -> None:
        self.in_flight = 0
        self.most_in_flight = 0

    async def send(self, to: str, title: str, body: str) -> None:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        await asyncio.sleep(0.01)
        self.in_flight -= 1


def email(notification_id: str, *, leased_until: datetime) -> dict[str, Any]:
    return {
        "_id": notification_id,
        "channel": "email",
        "email": "c@example.com",
        "title": "t",
        "body": "b",
        "recipient": "user:c",
        "kind": "application.submitted",
        "subject": "a1",
        "source_event_id": "e1",
        "delivery_due_at": leased_until,
    }


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


async def test_beyond_the_held_documents_a_delivery_is_leased_again_by_id_before_its_attempt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(delivery, "HELD_DOCUMENTS_LIMIT", 2)
    store, relay, mailer = FakeStore(taken_by_others={"n4"}), FakeRelay(), CountingMailer()
    worker = DeliveryWorker(store, relay, mailer, None, None, source="test")  # type: ignore[arg-type]
    leased_until, handed = worker.due_at_for_new()
    assert handed
    worker.hand_over([email(f"n{i}", leased_until=leased_until) for i in range(5)])
    await run_until_recorded(worker, store, 4)
    assert store.claims == ["n2", "n3", "n4"]  # the two kept in memory needed no claim
    assert sorted(doc_id for doc_id, _ in store.recorded) == ["n0", "n1", "n2", "n3"]
    assert sorted(relay.notified) == ["n0", "n1", "n2", "n3"]  # n4 was another worker's


async def test_a_lease_about_to_end_is_renewed_before_the_attempt() -> None:
    store, relay, mailer = FakeStore(taken_by_others=set()), FakeRelay(), CountingMailer()
    worker = DeliveryWorker(store, relay, mailer, None, None, source="test")  # type: ignore[arg-type]
    worker.hand_over([email("n0", leased_until=utc_now() + timedelta(seconds=5))])
    await run_until_recorded(worker, store, 1)
    assert store.claims == ["n0"]


async def test_handed_deliveries_are_attempted_several_at_once() -> None:
    store, relay, mailer = FakeStore(taken_by_others=set()), FakeRelay(), CountingMailer()
    worker = DeliveryWorker(store, relay, mailer, None, None, source="test")  # type: ignore[arg-type]
    leased_until, _ = worker.due_at_for_new()
    worker.hand_over([email(f"n{i}", leased_until=leased_until) for i in range(40)])
    await run_until_recorded(worker, store, 40)
    assert mailer.most_in_flight == delivery.SEND_CONCURRENCY
    assert all(status == "delivered" for _, status in store.recorded)

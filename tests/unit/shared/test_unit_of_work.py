"""The unit of work: one aggregate and its events, written at once and handed to the relay."""

from __future__ import annotations

import pytest

from hirestream.shared.correlation import correlated
from hirestream.shared.events.postings import CloseReason, PostingClosed
from hirestream.shared.events.types import utc_now
from hirestream.shared.service_layer.errors import UseCaseError
from hirestream.shared.service_layer.unit_of_work import (
    AlreadyStored,
    StaleVersion,
    UnitOfWork,
)
from tests.support.fakes import InMemoryAggregates, RecordingRelay


def closed(version: int) -> PostingClosed:
    return PostingClosed(
        posting_id="p1", org="acme", reason=CloseReason.FILLED, version=version, closed_at=utc_now()
    )


def unit() -> tuple[UnitOfWork[PostingClosed], InMemoryAggregates[PostingClosed], RecordingRelay]:
    # Any model with an id and a version does as the aggregate here.
    store = InMemoryAggregates[PostingClosed](lambda aggregate: aggregate.posting_id)
    relay = RecordingRelay()
    return UnitOfWork(store, relay, source="hirestream/tests"), store, relay


async def test_commit_writes_the_aggregate_with_its_events_enveloped_and_tells_the_relay() -> None:
    uow, store, relay = unit()
    aggregate = closed(1)
    uow.add(aggregate, closed(1))
    with correlated("req-1"):
        events = await uow.commit()
    assert store.aggregates["p1"] is aggregate
    assert [(e.type, e.subject, e.source, e.correlationid) for e in store.published()] == [
        ("posting.closed", "p1", "hirestream/tests", "req-1")
    ]
    assert [e.id for e in store.published()] == [e.id for e in events]
    assert relay.notified == ["p1"]


async def test_nothing_is_written_before_commit_or_when_the_write_is_refused() -> None:
    uow, store, relay = unit()
    store.put(closed(1))
    uow.add(closed(1), closed(1))
    assert store.writes == 0
    with pytest.raises(AlreadyStored):
        await uow.commit()
    assert (store.outbox, relay.notified) == ([], [])


async def test_an_update_from_a_stale_version_is_refused() -> None:
    uow, store, relay = unit()
    store.put(closed(2))
    uow.update(closed(3), closed(3), expected_version=1)
    with pytest.raises(StaleVersion):
        await uow.commit()
    assert relay.notified == []


async def test_a_unit_of_work_changes_one_aggregate() -> None:
    uow, _, _ = unit()
    uow.add(closed(1))
    with pytest.raises(UseCaseError):
        uow.add(closed(1))


async def test_a_commit_with_nothing_recorded_writes_nothing() -> None:
    uow, store, relay = unit()
    assert await uow.commit() == []
    assert (store.writes, relay.notified) == (0, [])

"""In-memory stand-ins for the ports the use cases run on, for unit tests of the service layer.

`InMemoryAggregates` behaves as the MongoDB stores promise to: ids unique (and any other
unique key the store has), an update only from the version it was made from, the pending
events kept in order with their aggregate. `RecordingRelay` is told what the real relay would
be told. `published(...)` reads the events back as their consumers would.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from hirestream.shared.events.catalog import BY_NAME
from hirestream.shared.events.envelope import CloudEvent
from hirestream.shared.messaging.outbox import OutboxEntry
from hirestream.shared.service_layer.unit_of_work import (
    AlreadyStored,
    IdempotencyRecord,
    StaleVersion,
    StoredRequest,
)

A = TypeVar("A", bound=BaseModel)


class InMemoryAggregates(Generic[A]):
    def __init__(
        self,
        id_of: Callable[[A], str],
        *,
        unique_key: Callable[[A], Hashable] | None = None,
        version_of: Callable[[A], int] = lambda aggregate: int(getattr(aggregate, "version", 1)),
    ) -> None:
        self._id_of = id_of
        self._unique_key = unique_key
        self._version_of = version_of
        self.aggregates: dict[str, A] = {}
        self.requests: dict[str, IdempotencyRecord | None] = {}
        self.outbox: list[OutboxEntry] = []
        self.writes = 0

    async def insert(
        self, aggregate: A, outbox: Sequence[OutboxEntry], idempotency: IdempotencyRecord | None
    ) -> str:
        aggregate_id = self._id_of(aggregate)
        taken = aggregate_id in self.aggregates
        if self._unique_key is not None:
            key = self._unique_key(aggregate)
            taken |= any(self._unique_key(a) == key for a in self.aggregates.values())
        if taken:
            raise AlreadyStored(aggregate_id)
        self.aggregates[aggregate_id] = aggregate
        self.requests[aggregate_id] = idempotency
        self.outbox += outbox
        self.writes += 1
        return aggregate_id

    async def update(
        self, aggregate: A, outbox: Sequence[OutboxEntry], expected_version: int
    ) -> str:
        aggregate_id = self._id_of(aggregate)
        stored = self.aggregates.get(aggregate_id)
        if stored is None or self._version_of(stored) != expected_version:
            raise StaleVersion(aggregate_id)
        self.aggregates[aggregate_id] = aggregate
        self.outbox += outbox
        self.writes += 1
        return aggregate_id

    async def get(self, aggregate_id: str) -> A | None:
        return self.aggregates.get(aggregate_id)

    async def stored_request(self, aggregate_id: str) -> StoredRequest | None:
        if aggregate_id not in self.aggregates:
            return None
        return StoredRequest(self.requests.get(aggregate_id))

    def put(self, aggregate: A) -> None:
        """Store an aggregate as if an earlier use case had (no events)."""
        self.aggregates[self._id_of(aggregate)] = aggregate

    def published(self) -> list[CloudEvent[Any]]:
        """The events written with the aggregates, parsed as a consumer would."""
        return published(self.outbox)


class RecordingRelay:
    """The outbox relay as a unit of work sees it: told which documents have events to send."""

    def __init__(self) -> None:
        self.notified: list[Any] = []

    def notify(self, doc_id: Any, *, written: list[OutboxEntry] | None = None) -> None:
        self.notified.append(doc_id)


class RecordingPublisher:
    """Events published directly (not through an outbox), in order."""

    def __init__(self) -> None:
        self.events: list[CloudEvent[Any]] = []

    async def __call__(self, event: CloudEvent[Any]) -> None:
        self.events.append(event)


def published(outbox: Sequence[OutboxEntry]) -> list[CloudEvent[Any]]:
    return [BY_NAME[entry["topic"]].parse(entry["value"]) for entry in outbox]

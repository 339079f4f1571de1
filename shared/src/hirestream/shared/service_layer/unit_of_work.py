"""The unit of work: what one use case changes, written at once.

A use case changes one aggregate and records the events the change causes. `commit` wraps those
events in their CloudEvents envelopes (this service as the source, the correlation id of the
work in hand), writes the aggregate together with them in ONE single-document write (the
outbox, messaging/outbox.py), and hands them to the relay, which publishes them after the
write. Nothing of a unit of work is written before `commit`, and a failed commit writes nothing.

Stores implement `AggregateStore` on MongoDB; unit tests of use cases give the same unit of
work an in-memory store and a relay that only remembers what it was handed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel

from hirestream.shared.correlation import current_correlation_id
from hirestream.shared.events.catalog import event_type_of
from hirestream.shared.events.envelope import CloudEvent
from hirestream.shared.messaging.outbox import OutboxEntry, outbox_entry
from hirestream.shared.service_layer.errors import UseCaseError
from hirestream.shared.tracing import current_trace_context

AggregateT = TypeVar("AggregateT", bound=BaseModel)
AggregateT_contra = TypeVar("AggregateT_contra", bound=BaseModel, contravariant=True)


class AlreadyStored(Exception):
    """An aggregate with this id is stored already (a retried request's derived id, or a
    unique key such as one application per candidate and posting)."""


class StaleVersion(Exception):
    """The stored aggregate is no longer at the version the change was made from."""


@dataclass(frozen=True)
class IdempotencyRecord:
    """Stored with an aggregate made by a request that carried an Idempotency-Key: the key, a
    hash of the request, and the aggregate as first returned, so a retry gets that again."""

    key: str
    request_hash: str
    first_response: bytes


@dataclass(frozen=True)
class StoredRequest:
    """What is stored under an idempotent request's derived id: its record, None once erased
    with the person's data."""

    record: IdempotencyRecord | None


class AggregateStore(Protocol[AggregateT_contra]):
    async def insert(
        self,
        aggregate: AggregateT_contra,
        outbox: Sequence[OutboxEntry],
        idempotency: IdempotencyRecord | None,
    ) -> Any:
        """Store a new aggregate with its pending events; returns the document id the relay is
        told. AlreadyStored if its id (or a unique key) is taken."""
        ...

    async def update(
        self, aggregate: AggregateT_contra, outbox: Sequence[OutboxEntry], expected_version: int
    ) -> Any:
        """Store the aggregate's next state and append its events, only if it is still at
        `expected_version`; returns the document id. StaleVersion otherwise."""
        ...


class Relay(Protocol):
    def notify(self, doc_id: Any, *, written: list[OutboxEntry] | None = None) -> None:
        """Publish the document's pending events soon; `written`: its whole outbox, when the
        caller knows it (a new document), so that it need not be read back."""
        ...


@dataclass
class _Change(Generic[AggregateT]):
    aggregate: AggregateT
    events: Sequence[BaseModel]
    expected_version: int | None  # None: a new aggregate
    idempotency: IdempotencyRecord | None


class UnitOfWork(Generic[AggregateT]):
    """One use case's change to one aggregate of `store`."""

    def __init__(self, store: AggregateStore[AggregateT], relay: Relay, *, source: str) -> None:
        self.store = store
        self.relay = relay
        self.source = source
        self._change: _Change[AggregateT] | None = None

    def add(
        self,
        aggregate: AggregateT,
        *events: BaseModel,
        idempotency: IdempotencyRecord | None = None,
    ) -> None:
        """A new aggregate, and the events its creation records."""
        self._record(_Change(aggregate, events, None, idempotency))

    def update(self, aggregate: AggregateT, *events: BaseModel, expected_version: int) -> None:
        """The aggregate's next state, made from `expected_version`, and the events it records."""
        self._record(_Change(aggregate, events, expected_version, None))

    def _record(self, change: _Change[AggregateT]) -> None:
        if self._change is not None:
            raise UseCaseError("a unit of work changes one aggregate")  # a bug in a use case
        self._change = change

    async def commit(self) -> list[CloudEvent[Any]]:
        """Write the change and its events at once; returns the events as they will be
        published. AlreadyStored or StaleVersion when the write was refused."""
        change, self._change = self._change, None
        if change is None:
            return []
        envelopes = [self.envelope(event) for event in change.events]
        outbox = [outbox_entry(envelope) for envelope in envelopes]
        if change.expected_version is None:
            doc_id = await self.store.insert(change.aggregate, outbox, change.idempotency)
            self.relay.notify(doc_id, written=outbox)
        else:
            doc_id = await self.store.update(change.aggregate, outbox, change.expected_version)
            self.relay.notify(doc_id)
        return envelopes

    def envelope(self, payload: BaseModel) -> CloudEvent[Any]:
        return event_type_of(payload).new(
            payload,
            source=self.source,
            correlation_id=current_correlation_id(),
            trace_context=current_trace_context(),
        )

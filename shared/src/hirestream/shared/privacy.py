"""Candidate erasure, the mechanism every service shares (its own anonymisation is its own).

On `candidate.erasure_requested` a service anonymises what it holds of the candidate, then
records the erasure in its `erasures` collection together with its `candidate.erased`
confirmation (one write, through the outbox). Anonymising is idempotent and the record's id
is the request id, so a redelivered request confirms once. The same collection is the
service's register of erased candidates: consumers consult it so that replaying old events
never brings personal data back.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import structlog
from faststream.kafka import KafkaBroker
from pymongo import IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from hirestream.shared.events.envelope import CloudEvent
from hirestream.shared.events.privacy import (
    CANDIDATE_ERASED,
    CANDIDATE_ERASURE_REQUESTED,
    CandidateErased,
    CandidateErasureRequested,
)
from hirestream.shared.events.types import utc_now
from hirestream.shared.messaging.consuming import subscribe
from hirestream.shared.messaging.outbox import (
    OUTBOX,
    OUTBOX_INDEX,
    OutboxRelay,
    new_outbox_fields,
)
from hirestream.shared.storage.mongo import CollectionIndexes, Document

log = structlog.get_logger(__name__)

ERASURES = "erasures"
ERASURE_INDEXES = CollectionIndexes(
    ERASURES,
    [
        IndexModel([("candidate_id", 1)], name="candidate"),
        IndexModel(OUTBOX_INDEX, name="outbox_due"),
    ],
)
ERASED_NAME = "(erased)"
ERASED_EMAIL = "erased@invalid.invalid"

Anonymise = Callable[[str], Awaitable[dict[str, int]]]


class ErasureLedger:
    def __init__(
        self,
        collection: AsyncCollection[Document],
        relay: OutboxRelay,
        *,
        service: str,
        source: str,
    ) -> None:
        self.collection = collection
        self.relay = relay
        self.service = service
        self.source = source

    async def erased_among(self, candidate_ids: Iterable[str]) -> set[str]:
        """Which of these candidates asked to be erased: one query for a batch of events."""
        found = self.collection.find(
            {"candidate_id": {"$in": sorted(set(candidate_ids))}}, projection={"candidate_id": 1}
        )
        return {document["candidate_id"] async for document in found}

    async def confirm(
        self,
        request: CandidateErasureRequested,
        *,
        anonymised: dict[str, int],
        kept: Sequence[str],
        correlation_id: str | None,
    ) -> bool:
        """Record the erasure and its confirmation once; False if already confirmed."""
        now = utc_now()
        erased = CANDIDATE_ERASED.new(
            CandidateErased(
                candidate_id=request.candidate_id,
                request_id=request.request_id,
                service=self.service,
                anonymised=anonymised,
                kept=list(kept),
                erased_at=now,
            ),
            source=self.source,
            correlation_id=correlation_id,
        )
        document: dict[str, Any] = {
            "_id": request.request_id,
            "candidate_id": request.candidate_id,
            "anonymised": anonymised,
            "erased_at": now,
            **new_outbox_fields([erased]),
        }
        try:
            await self.collection.insert_one(document)
        except DuplicateKeyError:
            return False
        self.relay.notify(request.request_id, written=document[OUTBOX])
        return True


def erasure_handler(
    ledger: ErasureLedger, *, anonymise: Anonymise, kept: Sequence[str]
) -> Callable[[CloudEvent[Any]], Awaitable[None]]:
    """The handler of `candidate.erasure_requested`: anonymise, record, anonymise again.

    The second pass is for a consumer that checked the register just before the record and
    writes the candidate's data just after the first pass (its check found nothing yet). A
    write that ends before the second pass starts is anonymised by it; one that ends later
    ended after the record, and the consumer's own check after its writes finds the erasure
    (see the notifications consumer). Anonymising is idempotent: the second pass leaves what
    the first one did as it is. An erasure is rare, so the extra pass costs next to nothing."""

    async def on_erasure_requested(event: CloudEvent[Any]) -> None:
        request: CandidateErasureRequested = event.data
        anonymised = await anonymise(request.candidate_id)
        new = await ledger.confirm(
            request, anonymised=anonymised, kept=kept, correlation_id=event.correlationid
        )
        await anonymise(request.candidate_id)
        log.info("candidate.erased", request_id=request.request_id, anonymised=anonymised, new=new)

    return on_erasure_requested


def register_erasure(
    broker: KafkaBroker,
    ledger: ErasureLedger,
    *,
    group_id: str,
    anonymise: Anonymise,
    kept: Sequence[str],
) -> None:
    handle = erasure_handler(ledger, anonymise=anonymise, kept=kept)
    subscribe(broker, CANDIDATE_ERASURE_REQUESTED, group_id=group_id, handle=handle)

"""Candidate erasure, the part every service shares (what each anonymises is its own).

On `candidate.erasure_requested` a service anonymises what it holds of the candidate, then
records the erasure in its `erasures` collection together with its `candidate.erased`
confirmation (one write, through the outbox), then anonymises once more. The record's id is the
request id, so a redelivered request confirms once. The same collection is the service's
register of erased candidates: consumers consult it, so that replaying old events never brings
personal data back.

Why anonymise twice: a consumer may check the register just before the record is written and
write the candidate's data just after the first pass. A write that ends before the second pass
starts is anonymised by it; one that ends later ended after the record, and that consumer's
own check after its writes finds the erasure. Anonymising is idempotent, and an erasure is
rare.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import structlog
from pydantic import BaseModel, ConfigDict
from pymongo import IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from hirestream.shared.events.envelope import CloudEvent
from hirestream.shared.events.privacy import (
    CANDIDATE_ERASURE_REQUESTED,
    CandidateErased,
    CandidateErasureRequested,
)
from hirestream.shared.events.privacy import (
    ERASED_EMAIL as ERASED_EMAIL,  # re-exported: the services anonymise with them
)
from hirestream.shared.events.privacy import (
    ERASED_NAME as ERASED_NAME,
)
from hirestream.shared.events.types import UtcDateTime, utc_now
from hirestream.shared.messaging.outbox import OUTBOX_INDEX, OutboxEntry, new_outbox_fields
from hirestream.shared.messaging.subscriptions import Subscription
from hirestream.shared.service_layer.unit_of_work import (
    AlreadyStored,
    IdempotencyRecord,
    UnitOfWork,
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

Anonymise = Callable[[str], Awaitable[dict[str, int]]]
"""Anonymises what the service holds of a candidate; returns how many documents, per kind."""


class Erasure(BaseModel):
    """That this service erased a candidate, for which request."""

    model_config = ConfigDict(frozen=True)

    request_id: str
    candidate_id: str
    anonymised: dict[str, int]
    erased_at: UtcDateTime


class ErasureLedger:
    """A service's record of erasures, and its register of erased candidates."""

    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self.collection = collection

    async def insert(
        self,
        erasure: Erasure,
        outbox: Sequence[OutboxEntry],
        idempotency: IdempotencyRecord | None,
    ) -> str:
        document = {
            "_id": erasure.request_id,
            **erasure.model_dump(exclude={"request_id"}),
            **new_outbox_fields(outbox),
        }
        try:
            await self.collection.insert_one(document)
        except DuplicateKeyError as error:
            raise AlreadyStored(erasure.request_id) from error
        return erasure.request_id

    async def update(
        self, erasure: Erasure, outbox: Sequence[OutboxEntry], expected_version: int
    ) -> Any:
        raise NotImplementedError("an erasure is recorded once and never changed")

    async def erased_among(self, candidate_ids: Iterable[str]) -> set[str]:
        """Which of these candidates asked to be erased: one query for a batch of events."""
        found = self.collection.find(
            {"candidate_id": {"$in": sorted(set(candidate_ids))}}, projection={"candidate_id": 1}
        )
        return {document["candidate_id"] async for document in found}


async def erase_candidate(
    request: CandidateErasureRequested,
    uow: UnitOfWork[Erasure],
    *,
    service: str,
    anonymise: Anonymise,
    kept: Sequence[str],
) -> bool:
    """Anonymise, record with the confirmation, anonymise again; False if already confirmed."""
    anonymised = await anonymise(request.candidate_id)
    now = utc_now()
    erasure = Erasure(
        request_id=request.request_id,
        candidate_id=request.candidate_id,
        anonymised=anonymised,
        erased_at=now,
    )
    confirmation = CandidateErased(
        candidate_id=request.candidate_id,
        request_id=request.request_id,
        service=service,
        anonymised=anonymised,
        kept=list(kept),
        erased_at=now,
    )
    uow.add(erasure, confirmation)
    try:
        await uow.commit()
        new = True
    except AlreadyStored:
        new = False
    await anonymise(request.candidate_id)
    log.info("candidate.erased", request_id=request.request_id, anonymised=anonymised, new=new)
    return new


def erasure_subscription(
    group: str,
    unit_of_work: Callable[[], UnitOfWork[Erasure]],
    *,
    service: str,
    anonymise: Anonymise,
    kept: Sequence[str],
) -> Subscription:
    async def on_erasure_requested(event: CloudEvent[CandidateErasureRequested]) -> None:
        await erase_candidate(
            event.data, unit_of_work(), service=service, anonymise=anonymise, kept=kept
        )

    return Subscription(CANDIDATE_ERASURE_REQUESTED, group, on_erasure_requested)

"""Event entrypoint of the applications service: `posting.*` into the postings read model."""

from __future__ import annotations

from typing import Any

import structlog
from faststream.kafka import KafkaBroker

from hirestream.applications.domain import PostingView
from hirestream.applications.store import (
    ApplicationStore,
    ErasureRequestStore,
    PostingReadModel,
)
from hirestream.shared.events.envelope import CloudEvent
from hirestream.shared.events.postings import (
    POSTING_CLOSED,
    POSTING_CREATED,
    POSTING_UPDATED,
    PostingClosed,
    PostingSnapshot,
)
from hirestream.shared.events.privacy import CANDIDATE_ERASED, ERASING_SERVICES, CandidateErased
from hirestream.shared.messaging.consuming import subscribe
from hirestream.shared.privacy import ErasureLedger, register_erasure

GROUP_ID = "applications.postings-read-model"

log = structlog.get_logger(__name__)


POSTING_EVENTS = (POSTING_CREATED, POSTING_UPDATED, POSTING_CLOSED)


def posting_view_of(event: CloudEvent[Any]) -> PostingView:
    """What a `posting.*` event says about a posting, for the read model."""
    data: PostingSnapshot | PostingClosed = event.data
    if isinstance(data, PostingClosed):
        return PostingView.from_closed(data)
    return PostingView.from_snapshot(data)


def register_consumers(broker: KafkaBroker, read_model: PostingReadModel) -> None:
    async def on_posting_event(event: CloudEvent[Any]) -> None:
        view = posting_view_of(event)
        stored = await read_model.apply(view)
        log.info(
            "read_model.posting", posting_id=view.posting_id, version=view.version, stored=stored
        )

    for event_type in POSTING_EVENTS:
        subscribe(broker, event_type, group_id=GROUP_ID, handle=on_posting_event)


PRIVACY_GROUP_ID = "applications.privacy"
ERASURE_STATUS_GROUP_ID = "applications.erasure-status"
KEPT = ["status history", "timestamps", "match scores", "skills", "consent records"]


def register_privacy_consumers(
    broker: KafkaBroker,
    ledger: ErasureLedger,
    applications: ApplicationStore,
    requests: ErasureRequestStore,
) -> None:
    async def anonymise(candidate_id: str) -> dict[str, int]:
        return {"applications": await applications.anonymise_candidate(candidate_id)}

    register_erasure(broker, ledger, group_id=PRIVACY_GROUP_ID, anonymise=anonymise, kept=KEPT)

    async def on_erased(event: CloudEvent[Any]) -> None:
        erased: CandidateErased = event.data
        if erased.service not in ERASING_SERVICES:
            log.warning("erasure.unknown_service", service=erased.service)
            return
        await requests.confirm(
            erased.request_id,
            {
                "service": erased.service,
                "erased_at": erased.erased_at,
                "anonymised": erased.anonymised,
                "kept": erased.kept,
            },
        )

    subscribe(broker, CANDIDATE_ERASED, group_id=ERASURE_STATUS_GROUP_ID, handle=on_erased)

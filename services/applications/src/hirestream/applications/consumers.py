"""Event entrypoint of the applications service: `posting.*` into the postings read model."""

from __future__ import annotations

from typing import Any

import structlog
from faststream.kafka import KafkaBroker

from hirestream.applications.domain import PostingView
from hirestream.applications.store import PostingReadModel
from hirestream.shared.events.envelope import CloudEvent
from hirestream.shared.events.postings import (
    POSTING_CLOSED,
    POSTING_CREATED,
    POSTING_UPDATED,
    PostingClosed,
    PostingSnapshot,
)
from hirestream.shared.messaging.consuming import subscribe

GROUP_ID = "applications.postings-read-model"

log = structlog.get_logger(__name__)


def register_consumers(broker: KafkaBroker, read_model: PostingReadModel) -> None:
    async def on_posting_changed(event: CloudEvent[Any]) -> None:
        posting: PostingSnapshot = event.data
        stored = await read_model.apply(PostingView.from_snapshot(posting))
        log.info(
            "read_model.posting",
            posting_id=posting.posting_id,
            version=posting.version,
            stored=stored,
        )

    async def on_posting_closed(event: CloudEvent[Any]) -> None:
        closed: PostingClosed = event.data
        stored = await read_model.apply(PostingView.from_closed(closed))
        log.info(
            "read_model.posting",
            posting_id=closed.posting_id,
            version=closed.version,
            stored=stored,
        )

    subscribe(broker, POSTING_CREATED, group_id=GROUP_ID, handle=on_posting_changed)
    subscribe(broker, POSTING_UPDATED, group_id=GROUP_ID, handle=on_posting_changed)
    subscribe(broker, POSTING_CLOSED, group_id=GROUP_ID, handle=on_posting_closed)

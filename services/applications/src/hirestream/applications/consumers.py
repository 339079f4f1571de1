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

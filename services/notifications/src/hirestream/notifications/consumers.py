"""Event entrypoint of the notifications service."""

from __future__ import annotations

from typing import Any

import structlog
from faststream.kafka import KafkaBroker

from hirestream.notifications.domain import AnnouncedPosting
from hirestream.notifications.store import AnnouncedPostingStore
from hirestream.shared.events.envelope import CloudEvent
from hirestream.shared.events.postings import POSTING_CREATED
from hirestream.shared.messaging.consuming import subscribe

GROUP_ID = "notifications.postings"

log = structlog.get_logger(__name__)


def register_consumers(broker: KafkaBroker, announced: AnnouncedPostingStore) -> None:
    async def on_posting_created(event: CloudEvent[Any]) -> None:
        posting = AnnouncedPosting.from_event(event.id, event.data)
        new = await announced.record(posting)
        log.info("posting.announced", posting_id=posting.posting_id, new=new)

    subscribe(broker, POSTING_CREATED, group_id=GROUP_ID, handle=on_posting_created)

"""Realistic test data."""

from __future__ import annotations

import uuid
from typing import Any

from hirestream.shared.events.envelope import serialize, source_of
from hirestream.shared.events.postings import (
    POSTING_CLOSED,
    POSTING_CREATED,
    POSTING_UPDATED,
    CloseReason,
    PostingClosed,
    PostingCreated,
    PostingUpdated,
)
from hirestream.shared.events.types import utc_now


def posting_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "title": "Senior Backend Developer",
        "company": "Acme Corp",
        "description": "Design and run event-driven services in Python on Kafka and MongoDB.",
        "location": {"city": "Seattle", "region": "WA", "country": "US"},
        "workplace": "hybrid",
        "employment_type": "full_time",
        "seniority": "senior",
        "skills": ["Python", "Kafka", "MongoDB", "kubernetes"],
        "salary": {"min": 16_000_000, "max": 19_000_000, "currency": "USD", "period": "year"},
        "contact_email": "hiring@acme.example",
    }
    body.update(changes)
    return body


def snapshot_fields(posting_id: str, version: int, **changes: Any) -> dict[str, Any]:
    now = utc_now()
    fields = {
        **posting_body(),
        "skills": ["python", "kafka", "mongodb", "kubernetes"],
        "posting_id": posting_id,
        "org": "acme",
        "status": "open",
        "version": version,
        "created_at": now,
        "updated_at": now,
    }
    fields.update(changes)
    return fields


def new_posting_id() -> str:
    return uuid.uuid4().hex[:24]


def posting_created_event(posting_id: str, **changes: Any) -> bytes:
    data = PostingCreated.model_validate(snapshot_fields(posting_id, 1, **changes))
    return serialize(POSTING_CREATED.new(data, source=source_of("postings")))


def posting_updated_event(posting_id: str, version: int, **changes: Any) -> bytes:
    data = PostingUpdated.model_validate(snapshot_fields(posting_id, version, **changes))
    return serialize(POSTING_UPDATED.new(data, source=source_of("postings")))


def posting_closed_event(posting_id: str, version: int) -> bytes:
    data = PostingClosed(
        posting_id=posting_id,
        org="acme",
        reason=CloseReason.FILLED,
        version=version,
        closed_at=utc_now(),
    )
    return serialize(POSTING_CLOSED.new(data, source=source_of("postings")))

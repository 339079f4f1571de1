"""Applications: the rules of this service, pure (no I/O, no framework imports).

So far: the postings read model. This service never calls postings over HTTP; it knows a
posting only from `posting.*` events, and keeps the newest version it has seen of each.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from hirestream.shared.events.postings import (
    CloseReason,
    PostingClosed,
    PostingSnapshot,
    PostingStatus,
)


class PostingView(BaseModel):
    """What applications needs to know of a posting: enough to accept and score applications.

    A `posting.closed` that arrives before its `posting.created` leaves a view with the status
    and version only; the older creation is then ignored, and applying is refused (closed).
    """

    model_config = ConfigDict(frozen=True)

    posting_id: str
    version: int
    status: PostingStatus
    org: str
    title: str | None = None
    skills: list[str] | None = None
    contact_email: str | None = None
    updated_at: datetime | None = None
    close_reason: CloseReason | None = None
    closed_at: datetime | None = None

    @classmethod
    def from_snapshot(cls, posting: PostingSnapshot) -> PostingView:
        return cls(
            posting_id=posting.posting_id,
            version=posting.version,
            status=posting.status,
            org=posting.org,
            title=posting.title,
            skills=posting.skills,
            contact_email=posting.contact_email,
            updated_at=posting.updated_at,
        )

    @classmethod
    def from_closed(cls, closed: PostingClosed) -> PostingView:
        return cls(
            posting_id=closed.posting_id,
            version=closed.version,
            status=PostingStatus.CLOSED,
            org=closed.org,
            close_reason=closed.reason,
            closed_at=closed.closed_at,
        )

    def fields_to_store(self) -> dict[str, object]:
        """Only the fields this change knows: a closing must not erase the title it lacks."""
        return self.model_dump(mode="python", exclude_none=True, exclude={"posting_id"})

"""Notifications: the rules of this service, pure (no I/O, no framework imports).

So far: the postings this service has heard of, which job alerts will be matched against.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from hirestream.shared.events.postings import PostingCreated


class AnnouncedPosting(BaseModel):
    """A posting announced by `posting.created`, as recorded for alert matching."""

    model_config = ConfigDict(frozen=True)

    posting_id: str
    org: str
    title: str
    skills: list[str]
    version: int
    announced_by_event: str
    announced_at: datetime

    @classmethod
    def from_event(cls, event_id: str, posting: PostingCreated) -> AnnouncedPosting:
        return cls(
            posting_id=posting.posting_id,
            org=posting.org,
            title=posting.title,
            skills=posting.skills,
            version=posting.version,
            announced_by_event=event_id,
            announced_at=posting.created_at,
        )

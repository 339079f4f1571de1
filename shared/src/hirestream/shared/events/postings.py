"""Payloads of the `posting.*` events (docs/events.md).

These models say what is on the wire, for producers and consumers alike. The rules a new posting
must satisfy (lengths, salary bounds) live in the postings service's domain, not here.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveInt

from hirestream.shared.events.envelope import EventType
from hirestream.shared.events.types import UtcDateTime


class Workplace(StrEnum):
    ONSITE = "onsite"
    HYBRID = "hybrid"
    REMOTE = "remote"


class EmploymentType(StrEnum):
    FULL_TIME = "full_time"
    PART_TIME = "part_time"
    CONTRACT = "contract"
    INTERNSHIP = "internship"


class Seniority(StrEnum):
    JUNIOR = "junior"
    MID = "mid"
    SENIOR = "senior"
    STAFF = "staff"
    PRINCIPAL = "principal"


class SalaryPeriod(StrEnum):
    YEAR = "year"
    MONTH = "month"
    HOUR = "hour"


class PostingStatus(StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class CloseReason(StrEnum):
    FILLED = "filled"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class _Payload(BaseModel):
    # Consumers ignore fields they do not know: producers may add fields without a new version.
    model_config = ConfigDict(extra="ignore", frozen=True)


class Location(_Payload):
    city: str
    region: str | None = None
    country: str = Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2")


class Salary(_Payload):
    min: NonNegativeInt = Field(description="integer minor units")
    max: NonNegativeInt = Field(description="integer minor units")
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 4217")
    period: SalaryPeriod = SalaryPeriod.YEAR


class PostingSnapshot(_Payload):
    """The full posting: `posting.created` and `posting.updated` carry it whole."""

    posting_id: str
    org: str
    title: str
    company: str
    description: str
    location: Location
    workplace: Workplace
    employment_type: EmploymentType
    seniority: Seniority
    skills: list[str]
    salary: Salary | None = None
    contact_email: str | None = None
    status: PostingStatus
    version: PositiveInt
    created_at: UtcDateTime
    updated_at: UtcDateTime
    # When the posting closes itself with reason `expired`; absent on postings from before
    # expiry existed, which stay open until closed.
    expires_at: UtcDateTime | None = None


class PostingCreated(PostingSnapshot):
    """A posting was published and is open."""


class PostingUpdated(PostingSnapshot):
    """Fields of an open posting changed."""


class PostingClosed(_Payload):
    """A posting stopped taking applications."""

    posting_id: str
    org: str
    reason: CloseReason
    version: PositiveInt
    closed_at: UtcDateTime
    # What the employer is told the closed posting was, without a lookup.
    title: str | None = None
    contact_email: str | None = None


# Kept forever: applications rebuilds its postings read model by replaying them from offset 0.
POSTING_CREATED = EventType(
    "posting.created",
    PostingCreated,
    subject_field="posting_id",
    publishers=("postings",),
    kept_forever=True,
)
POSTING_UPDATED = EventType(
    "posting.updated",
    PostingUpdated,
    subject_field="posting_id",
    publishers=("postings",),
    kept_forever=True,
)
POSTING_CLOSED = EventType(
    "posting.closed",
    PostingClosed,
    subject_field="posting_id",
    publishers=("postings",),
    kept_forever=True,
)

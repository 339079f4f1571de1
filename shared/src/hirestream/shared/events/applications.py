"""Payloads of the `application.*` events (docs/events.md)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, PositiveInt

from hirestream.shared.events.envelope import EventType
from hirestream.shared.events.types import UtcDateTime


class ApplicationStatus(StrEnum):
    SUBMITTED = "submitted"
    SCREENING = "screening"
    INTERVIEW = "interview"
    OFFER = "offer"
    HIRED = "hired"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Candidate(_Payload):
    candidate_id: str
    name: str
    email: str


class Match(_Payload):
    """How the candidate's skills cover the posting's: score = matched / posting skills."""

    score: float = Field(ge=0, le=1)
    matched_skills: list[str]
    missing_skills: list[str]


class Consent(_Payload):
    """What the candidate agreed to when applying."""

    processing: bool = Field(description="processing of this application's personal data")
    keep_profile: bool = Field(
        default=False, description="keeping the profile to be considered for future roles"
    )
    given_at: UtcDateTime


class ApplicationSubmitted(_Payload):
    """A candidate applied to a posting."""

    application_id: str
    posting_id: str
    org: str
    candidate: Candidate
    resume_url: str
    cover_letter: str | None = None
    skills: list[str]
    match: Match
    consent: Consent | None = None  # absent only in events from before consent was captured
    status: ApplicationStatus
    version: PositiveInt
    submitted_at: UtcDateTime


class ApplicationStatusChanged(_Payload):
    """An application moved in the workflow (including a withdrawal)."""

    application_id: str
    posting_id: str
    org: str
    candidate_id: str
    from_status: ApplicationStatus
    to_status: ApplicationStatus
    reason: str | None = None
    changed_by: str
    version: PositiveInt
    changed_at: UtcDateTime


APPLICATION_SUBMITTED = EventType(
    "application.submitted",
    ApplicationSubmitted,
    subject_field="application_id",
    publishers=("applications",),
    carries_personal_data=True,
)
APPLICATION_STATUS_CHANGED = EventType(
    "application.status_changed",
    ApplicationStatusChanged,
    subject_field="application_id",
    publishers=("applications",),
)

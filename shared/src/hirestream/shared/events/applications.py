"""Payloads of the `application.*` events (CONTRACT.md, "Payloads")."""

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
    "application.submitted", ApplicationSubmitted, subject_field="application_id"
)
APPLICATION_STATUS_CHANGED = EventType(
    "application.status_changed", ApplicationStatusChanged, subject_field="application_id"
)

"""Payloads of the candidate-privacy events: an erasure is requested once, and every service
confirms what it did."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from hirestream.shared.events.envelope import EventType
from hirestream.shared.events.types import UtcDateTime


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class CandidateErasureRequested(_Payload):
    """A candidate's personal data must be anonymised in every service."""

    candidate_id: str
    request_id: str
    requested_by: str
    requested_at: UtcDateTime


class CandidateErased(_Payload):
    """One service anonymised what it held of a candidate. `anonymised` counts documents per
    kind; `kept` names the non-personal data kept (funnel counts, statuses, scores)."""

    candidate_id: str
    request_id: str
    service: str
    anonymised: dict[str, int] = Field(default_factory=dict)
    kept: list[str] = Field(default_factory=list)
    erased_at: UtcDateTime


# The services that hold something of a candidate and must each confirm an erasure.
ERASING_SERVICES = ("postings", "applications", "notifications")

CANDIDATE_ERASURE_REQUESTED = EventType(
    "candidate.erasure_requested",
    CandidateErasureRequested,
    subject_field="candidate_id",
    publishers=("applications",),
    kept_forever=True,  # a service down for longer than a week must still receive it
)
CANDIDATE_ERASED = EventType(
    "candidate.erased",
    CandidateErased,
    subject_field="candidate_id",
    publishers=ERASING_SERVICES,
)

# What an erased candidate's name and address become wherever they were kept.
ERASED_NAME = "(erased)"
ERASED_EMAIL = "erased@invalid.invalid"

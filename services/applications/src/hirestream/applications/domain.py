"""Applications: the rules of this service, pure (no I/O, no framework imports).

- The status workflow: which moves exist and who may make them.
- The match score of a candidate's skills against a posting's.
- The postings read model: this service never calls postings over HTTP; it knows a posting
  only from `posting.*` events and keeps the newest version it has seen of each.
- Triage order, and a posting's pipeline: applications per status and time spent in each.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    HttpUrl,
)

from hirestream.shared.events.applications import (
    ApplicationStatus,
    ApplicationStatusChanged,
    ApplicationSubmitted,
    Candidate,
    Consent,
    Match,
)
from hirestream.shared.events.postings import (
    CloseReason,
    PostingClosed,
    PostingSnapshot,
    PostingStatus,
)
from hirestream.shared.events.privacy import ERASING_SERVICES, CandidateErasureRequested
from hirestream.shared.events.types import PositiveInt64, UtcDateTime, normalised_skills
from hirestream.shared.identity import Principal, Role


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

    @classmethod
    def of(cls, data: PostingSnapshot | PostingClosed) -> PostingView:
        """What any `posting.*` event says of its posting."""
        if isinstance(data, PostingClosed):
            return cls.from_closed(data)
        return cls.from_snapshot(data)

    def fields_to_store(self) -> dict[str, object]:
        """Only the fields this change knows: a closing must not erase the title it lacks."""
        return self.model_dump(mode="python", exclude_none=True, exclude={"posting_id"})


# ---------------------------------------------------------------------------- the workflow


class Party(StrEnum):
    """Who may make a move: the posting's employer (or an admin), or the candidate."""

    EMPLOYER = "employer"
    CANDIDATE = "candidate"


S = ApplicationStatus
FINAL = frozenset({S.HIRED, S.REJECTED, S.WITHDRAWN})
FORWARD = {
    S.SUBMITTED: S.SCREENING,
    S.SCREENING: S.INTERVIEW,
    S.INTERVIEW: S.OFFER,
    S.OFFER: S.HIRED,
}


def allowed_moves(current: ApplicationStatus) -> dict[ApplicationStatus, Party]:
    """Every move out of `current`, and the party that may make it. None out of a final one."""
    if current in FINAL:
        return {}
    return {
        FORWARD[current]: Party.EMPLOYER,
        S.REJECTED: Party.EMPLOYER,
        S.WITHDRAWN: Party.CANDIDATE,
    }


class IllegalMove(Exception):
    def __init__(self, current: ApplicationStatus, target: ApplicationStatus) -> None:
        self.current = current
        self.target = target
        self.allowed = sorted(allowed_moves(current))
        super().__init__(f"{current} cannot move to {target}")


class WrongParty(Exception):
    def __init__(self, target: ApplicationStatus, needed: Party) -> None:
        self.target = target
        self.needed = needed
        super().__init__(f"only the {needed} may move an application to {target}")


def party_for(target: ApplicationStatus) -> Party:
    """Who may move an application to `target`: candidates only withdraw."""
    return Party.CANDIDATE if target is S.WITHDRAWN else Party.EMPLOYER


# ----------------------------------------------------------------------------- match score


def match_skills(candidate_skills: list[str], posting_skills: list[str]) -> Match:
    """How well the candidate covers the skills the posting asks for.

    score = |posting skills the candidate has| / |posting skills|, rounded to 3 places;
    1.0 when the posting names no skills. Skills compare after normalisation (lowercase,
    trimmed), so "Python " matches "python". Extra candidate skills neither help nor hurt.
    """
    have = set(normalised_skills(candidate_skills))
    wanted = normalised_skills(posting_skills)
    matched = [skill for skill in wanted if skill in have]
    missing = [skill for skill in wanted if skill not in have]
    score = round(len(matched) / len(wanted), 3) if wanted else 1.0
    return Match(score=score, matched_skills=matched, missing_skills=missing)


# ----------------------------------------------------------------------------- applications


class ConsentForm(BaseModel):
    """Consent as the candidate gives it: processing is required to apply at all."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    processing: Literal[True] = Field(
        description="I agree to the processing of my personal data for this application"
    )
    keep_profile: bool = Field(
        default=False, description="Keep my profile to consider me for future roles"
    )


class ApplicationForm(BaseModel):
    """What a candidate sends: the body of `POST /postings/{posting_id}/applications`."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)

    name: str = Field(min_length=1, max_length=200)
    email: EmailStr
    resume_url: HttpUrl
    skills: Annotated[list[str], Field(max_length=50), AfterValidator(normalised_skills)] = Field(
        default_factory=list
    )
    cover_letter: str | None = Field(default=None, max_length=10_000)
    consent: ConsentForm


class PostingNotOpen(Exception):
    """The posting is closed (or known only from its closing): applications are refused."""


class StatusChange(BaseModel):
    model_config = ConfigDict(frozen=True)

    from_status: ApplicationStatus
    to_status: ApplicationStatus
    # Null where the reader may not see who made the move (a candidate, of the employer's).
    changed_by: str | None
    reason: str | None = None
    changed_at: UtcDateTime

    def anonymous(self) -> StatusChange:
        return self.model_copy(update={"changed_by": None, "reason": None})


class Application(BaseModel):
    """One candidate's application to one posting. `version` counts its changes from 1."""

    model_config = ConfigDict(frozen=True)

    application_id: str
    posting_id: str
    org: str
    candidate: Candidate
    resume_url: str
    cover_letter: str | None = None
    skills: list[str]
    match: Match
    consent: Consent | None = None
    status: ApplicationStatus
    version: PositiveInt64
    submitted_at: UtcDateTime
    updated_at: UtcDateTime
    history: list[StatusChange] = Field(default_factory=list)
    anonymised: bool = False

    def visible_to(self, caller: Principal) -> bool:
        """The candidate who applied, the posting's employer, or an admin."""
        return (
            caller.is_admin
            or (caller.role is Role.CANDIDATE and caller.user_id == self.candidate.candidate_id)
            or (caller.role is Role.EMPLOYER and caller.org == self.org)
        )

    def as_seen_by(self, caller: Principal) -> Application:
        """The application as `caller` may see it: the candidate sees the employer's moves
        in the history without the employer's reasons and who made them."""
        if caller.role is not Role.CANDIDATE:
            return self
        own = self.candidate.candidate_id
        history = [c if c.changed_by == own else c.anonymous() for c in self.history]
        return self.model_copy(update={"history": history})

    def json_bytes(self) -> bytes:
        """The application as the API returns it (kept as first returned for a retry)."""
        return self.model_dump_json().encode()

    @classmethod
    def submit(
        cls,
        form: ApplicationForm,
        *,
        application_id: str,
        candidate_id: str,
        posting: PostingView,
        now: datetime,
    ) -> tuple[Application, ApplicationSubmitted]:
        if posting.status is not PostingStatus.OPEN:
            raise PostingNotOpen(posting.posting_id)
        application = cls(
            application_id=application_id,
            posting_id=posting.posting_id,
            org=posting.org,
            candidate=Candidate(candidate_id=candidate_id, name=form.name, email=form.email),
            resume_url=str(form.resume_url),
            cover_letter=form.cover_letter,
            skills=form.skills,
            match=match_skills(form.skills, posting.skills or []),
            consent=Consent(
                processing=form.consent.processing,
                keep_profile=form.consent.keep_profile,
                given_at=now,
            ),
            status=ApplicationStatus.SUBMITTED,
            version=1,
            submitted_at=now,
            updated_at=now,
        )
        return application, ApplicationSubmitted.model_validate(application.model_dump())

    def move(
        self,
        target: ApplicationStatus,
        *,
        by: Party,
        user_id: str,
        reason: str | None,
        now: datetime,
    ) -> tuple[Application, ApplicationStatusChanged]:
        """The next state: WrongParty (403) before IllegalMove (409), so a candidate learns
        only that they may withdraw, not the employer's pipeline."""
        needed = party_for(target)
        if by is not needed:
            raise WrongParty(target, needed)
        if target not in allowed_moves(self.status):
            raise IllegalMove(self.status, target)
        change = StatusChange(
            from_status=self.status,
            to_status=target,
            changed_by=user_id,
            reason=reason,
            changed_at=now,
        )
        moved = self.model_copy(
            update={
                "status": target,
                "version": self.version + 1,
                "updated_at": now,
                "history": [*self.history, change],
            }
        )
        event = ApplicationStatusChanged(
            application_id=self.application_id,
            posting_id=self.posting_id,
            org=self.org,
            candidate_id=self.candidate.candidate_id,
            from_status=self.status,
            to_status=target,
            reason=reason,
            changed_by=user_id,
            version=moved.version,
            changed_at=now,
        )
        return moved, event


# ---------------------------------------------------------------------------- triage order


class ApplicationOrder(StrEnum):
    """How a list of applications is sorted: newest first, or best match first (ties by id).

    The match score compares a candidate with one posting's skills, so best-match order is
    meaningful only within one posting: it needs `posting_id`."""

    NEWEST = "-submitted_at"
    BEST_MATCH = "-match"

    @property
    def needs_posting(self) -> bool:
        return self is ApplicationOrder.BEST_MATCH


# ------------------------------------------------------------------------------- pipeline


class Step(BaseModel):
    """One entry of an application into a status: version n of the application entered
    `status` at `at`. Submission is version 1; each status change is the next version."""

    model_config = ConfigDict(frozen=True)

    application_id: str
    posting_id: str
    org: str
    version: PositiveInt64
    status: ApplicationStatus
    at: UtcDateTime

    @classmethod
    def of(cls, data: ApplicationSubmitted | ApplicationStatusChanged) -> Step:
        """What an `application.*` event says of its application's journey."""
        if isinstance(data, ApplicationSubmitted):
            status, at = data.status, data.submitted_at
        else:
            status, at = data.to_status, data.changed_at
        return cls(
            application_id=data.application_id,
            posting_id=data.posting_id,
            org=data.org,
            version=data.version,
            status=status,
            at=at,
        )


class StatusFigures(BaseModel):
    status: ApplicationStatus
    count: int = Field(description="applications in this status now")
    left: int = Field(
        description="applications whose stay in this status is known: they entered it and "
        "left it again (the durations below are of these only)"
    )
    median_s: float | None = Field(description="median seconds spent in this status (of `left`)")
    p90_s: float | None = Field(description="90th percentile of those seconds")


class Pipeline(BaseModel):
    """A posting's applications by status, and how long they stayed in each."""

    posting_id: str
    applications: int
    statuses: list[StatusFigures]


def percentile(values: list[float], q: float) -> float | None:
    """The q-quantile (0 <= q <= 1) by linear interpolation between the closest ranks of the
    sorted values (numpy's default, `statistics.quantiles(method="inclusive")`); None of none."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def stays(steps: list[Step]) -> list[tuple[ApplicationStatus, float]]:
    """Each status the application left, with the seconds it spent there: from entering it
    (version n) to entering the next (version n + 1). A stay whose end or start is not known
    (an event not yet seen) is left out; clocks of replicas may differ, so never below 0."""
    by_version = {step.version: step for step in steps}
    return [
        (step.status, max(0.0, (following.at - step.at).total_seconds()))
        for step in by_version.values()
        if (following := by_version.get(step.version + 1)) is not None
    ]


def pipeline_of(posting_id: str, journeys: list[list[Step]]) -> Pipeline:
    """Counts per current status (the status of each application's newest known version)
    and the median and p90 of the time spent in each status by the applications that left
    it. Every status of the workflow is listed, in workflow order, zero where none."""
    counts = dict.fromkeys(ApplicationStatus, 0)
    seconds: dict[ApplicationStatus, list[float]] = {status: [] for status in ApplicationStatus}
    applications = 0
    for steps in journeys:
        if not steps:
            continue
        applications += 1
        counts[max(steps, key=lambda step: step.version).status] += 1
        for status, spent in stays(steps):
            seconds[status].append(spent)
    return Pipeline(
        posting_id=posting_id,
        applications=applications,
        statuses=[
            StatusFigures(
                status=status,
                count=counts[status],
                left=len(seconds[status]),
                median_s=percentile(seconds[status], 0.5),
                p90_s=percentile(seconds[status], 0.9),
            )
            for status in ApplicationStatus
        ],
    )


# ------------------------------------------------------------------------------- erasure


class Confirmation(BaseModel):
    """One service's answer to an erasure request."""

    model_config = ConfigDict(frozen=True)

    service: str
    erased_at: UtcDateTime
    anonymised: dict[str, int] = Field(default_factory=dict)
    kept: list[str] = Field(default_factory=list)


class ErasureRequest(BaseModel):
    """A candidate's request to have their personal data erased in every service."""

    model_config = ConfigDict(frozen=True)

    request_id: str
    candidate_id: str
    requested_by: str
    requested_at: UtcDateTime
    confirmations: list[Confirmation] = Field(default_factory=list)

    @property
    def waiting_for(self) -> list[str]:
        confirmed = {confirmation.service for confirmation in self.confirmations}
        return [service for service in ERASING_SERVICES if service not in confirmed]

    @property
    def complete(self) -> bool:
        return not self.waiting_for

    @classmethod
    def request(
        cls, *, request_id: str, candidate_id: str, requested_by: str, now: datetime
    ) -> tuple[ErasureRequest, CandidateErasureRequested]:
        request = cls(
            request_id=request_id,
            candidate_id=candidate_id,
            requested_by=requested_by,
            requested_at=now,
        )
        event = CandidateErasureRequested(
            candidate_id=candidate_id,
            request_id=request_id,
            requested_by=requested_by,
            requested_at=now,
        )
        return request, event

"""Postings: what a posting is, the rules it obeys, and the events each change records.

Pure: no I/O and no framework imports, so every rule is unit-tested without a database.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    field_validator,
    model_validator,
)
from pydantic_extra_types.country import CountryAlpha2
from pydantic_extra_types.currency_code import ISO4217

from hirestream.shared.events.postings import (
    CloseReason,
    EmploymentType,
    PostingClosed,
    PostingCreated,
    PostingStatus,
    PostingUpdated,
    SalaryPeriod,
    Seniority,
    Workplace,
)
from hirestream.shared.events.types import (
    NonNegativeInt64,
    PositiveInt64,
    UtcDateTime,
    normalised_skills,
)

MAX_SKILLS = 30
MAX_SKILL_LENGTH = 40


def normalise_skills(skills: list[str]) -> list[str]:
    """Normalised as the contract says, and bounded in number and length."""
    unique = normalised_skills(skills)
    if len(unique) > MAX_SKILLS:
        raise ValueError(f"at most {MAX_SKILLS} distinct skills")
    too_long = [skill for skill in unique if len(skill) > MAX_SKILL_LENGTH]
    if too_long:
        raise ValueError(f"a skill is at most {MAX_SKILL_LENGTH} characters")
    return unique


Skills = Annotated[list[str], Field(max_length=100), AfterValidator(normalise_skills)]


class _Input(BaseModel):
    # Unknown fields are refused: a typo in a field name must not silently drop data.
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)


class Location(_Input):
    city: str = Field(min_length=1, max_length=100)
    region: str | None = Field(default=None, max_length=100)
    country: CountryAlpha2


class Salary(_Input):
    min: NonNegativeInt64 = Field(description="integer minor units (cents)")
    max: NonNegativeInt64 = Field(description="integer minor units (cents)")
    currency: ISO4217
    period: SalaryPeriod = SalaryPeriod.YEAR

    @model_validator(mode="after")
    def _min_not_above_max(self) -> Salary:
        if self.min > self.max:
            raise ValueError("salary min must not exceed max")
        return self


class PostingDraft(_Input):
    """The fields of a posting its employer writes: the body of `POST /postings`."""

    title: str = Field(min_length=3, max_length=150)
    company: str = Field(min_length=1, max_length=150)
    description: str = Field(min_length=20, max_length=20_000)
    location: Location
    workplace: Workplace
    employment_type: EmploymentType
    seniority: Seniority
    skills: Skills = Field(default_factory=list)
    salary: Salary | None = None
    contact_email: EmailStr | None = None
    expires_at: UtcDateTime | None = Field(
        default=None,
        description="when the posting closes itself (reason `expired`); in the future, at most "
        "POSTING_MAX_TTL_DAYS ahead; POSTING_DEFAULT_TTL_DAYS ahead when left out",
    )


class PostingChanges(_Input):
    """The body of `PATCH /postings/{id}`: the fields to change, as in JSON Merge Patch.

    A field left out stays as it is; `null` removes an optional field (`salary`,
    `contact_email`); `location` and `salary` are replaced whole. The result must again be a
    valid posting. `expires_at` may move either way within the bounds of publishing, counted
    from the change.
    """

    title: str | None = Field(default=None, min_length=3, max_length=150)
    company: str | None = Field(default=None, min_length=1, max_length=150)
    description: str | None = Field(default=None, min_length=20, max_length=20_000)
    location: Location | None = None
    workplace: Workplace | None = None
    employment_type: EmploymentType | None = None
    seniority: Seniority | None = None
    skills: Skills | None = None
    salary: Salary | None = None
    contact_email: EmailStr | None = None
    expires_at: UtcDateTime | None = None

    @field_validator(
        "title",
        "company",
        "description",
        "location",
        "workplace",
        "employment_type",
        "seniority",
        "skills",
        "expires_at",
    )
    @classmethod
    def _not_removable(cls, value: object) -> object:
        # Runs only for fields the request names: null may remove an optional field
        # (salary, contact_email) but not one every posting needs, nor make one never expire.
        if value is None:
            raise ValueError("cannot be null: every posting has it")
        return value

    @model_validator(mode="after")
    def _changes_something(self) -> PostingChanges:
        if not self.model_fields_set:
            raise ValueError("name at least one field to change")
        return self

    def as_updates(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.model_fields_set}


class PostingIsClosed(Exception):
    """A closed posting takes no more changes."""


class ExpiryOutOfBounds(ValueError):
    """An `expires_at` in the past, or further ahead than a posting may run."""


DEFAULT_TTL_DAYS = 30.0
MAX_TTL_DAYS = 90.0


@dataclass(frozen=True)
class ExpiryPolicy:
    """How long a posting runs: `default` when its employer names no end; an end named must be
    in the future and at most `longest` ahead, counted from the publish or change that names it
    (so an employer extends a posting by changing it while it is open)."""

    default: timedelta = timedelta(days=DEFAULT_TTL_DAYS)
    longest: timedelta = timedelta(days=MAX_TTL_DAYS)

    def __post_init__(self) -> None:
        if not timedelta(0) < self.default <= self.longest:
            raise ValueError("the default lifetime must be positive and at most the longest")

    def expires_at(self, requested: datetime | None, *, now: datetime) -> datetime:
        """The end of a posting published at `now`, as requested or by default."""
        if requested is None:
            return now + self.default
        self.check(requested, now=now)
        return requested

    def check(self, requested: datetime, *, now: datetime) -> None:
        if requested <= now:
            raise ExpiryOutOfBounds("expires_at must be in the future")
        if requested > now + self.longest:
            days = self.longest / timedelta(days=1)
            raise ExpiryOutOfBounds(f"expires_at must be at most {days:g} days ahead")


DEFAULT_EXPIRY = ExpiryPolicy()


class Posting(PostingDraft):
    """A posting as the service holds it. `version` counts its changes, starting at 1."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    posting_id: str
    org: str
    status: PostingStatus
    version: PositiveInt64
    created_at: UtcDateTime
    updated_at: UtcDateTime
    closed_at: UtcDateTime | None = None
    close_reason: CloseReason | None = None

    @property
    def is_open(self) -> bool:
        return self.status is PostingStatus.OPEN

    def has_expired(self, now: datetime) -> bool:
        """Open, but past its end: the expiry job closes it, and it is no longer advertised.
        Postings from before expiry existed have no end and run until closed."""
        return self.is_open and self.expires_at is not None and self.expires_at <= now

    def is_advertised(self, now: datetime) -> bool:
        """What job boards may show: open and not past its end."""
        return self.is_open and not self.has_expired(now)

    def owned_by(self, org: str | None) -> bool:
        return org is not None and org == self.org

    def json_bytes(self) -> bytes:
        """The posting as the API returns it (kept as first returned for an idempotent retry)."""
        return self.model_dump_json().encode()

    @classmethod
    def publish(
        cls,
        draft: PostingDraft,
        *,
        posting_id: str,
        org: str,
        now: datetime,
        expiry: ExpiryPolicy = DEFAULT_EXPIRY,
    ) -> tuple[Posting, PostingCreated]:
        """A new open posting, and the `posting.created` payload that announces it.
        ExpiryOutOfBounds if the draft names an end the policy refuses."""
        posting = cls(
            **{
                **draft.model_dump(),
                "expires_at": expiry.expires_at(draft.expires_at, now=now),
            },
            posting_id=posting_id,
            org=org,
            status=PostingStatus.OPEN,
            version=1,
            created_at=now,
            updated_at=now,
        )
        return posting, PostingCreated.model_validate(posting.model_dump())

    def change(
        self,
        changes: PostingChanges,
        *,
        now: datetime,
        expiry: ExpiryPolicy = DEFAULT_EXPIRY,
    ) -> tuple[Posting, PostingUpdated | None]:
        """The changed posting and its `posting.updated`, or itself and None if nothing
        differs (no new version for a no-op). ExpiryOutOfBounds for a new end the policy
        refuses. A posting past its end that the expiry job has not closed yet is still open:
        a change that moves its end keeps it open (whichever write comes first wins)."""
        if not self.is_open:
            raise PostingIsClosed(self.posting_id)
        if changes.expires_at is not None:
            expiry.check(changes.expires_at, now=now)
        merged = {**self.model_dump(), **changes.as_updates()}
        draft = PostingDraft.model_validate(
            {name: merged[name] for name in PostingDraft.model_fields}
        )
        if draft == PostingDraft.model_validate(self.model_dump(include=_DRAFT_FIELDS)):
            return self, None
        changed = Posting.model_validate(
            {
                **self.model_dump(),
                **draft.model_dump(),
                "version": self.version + 1,
                "updated_at": now,
            }
        )
        return changed, PostingUpdated.model_validate(changed.model_dump())

    def close(self, reason: CloseReason, *, now: datetime) -> tuple[Posting, PostingClosed]:
        """Closed for good, and the `posting.closed` that tells its employer (title and contact
        address included) and the other services."""
        if not self.is_open:
            raise PostingIsClosed(self.posting_id)
        closed = self.model_copy(
            update={
                "status": PostingStatus.CLOSED,
                "version": self.version + 1,
                "updated_at": now,
                "closed_at": now,
                "close_reason": reason,
            }
        )
        event = PostingClosed(
            posting_id=closed.posting_id,
            org=closed.org,
            reason=reason,
            version=closed.version,
            closed_at=now,
            title=closed.title,
            contact_email=closed.contact_email,
        )
        return closed, event

    def expire(self, *, now: datetime) -> tuple[Posting, PostingClosed] | None:
        """Closed with reason `expired` if it is past its end at `now`; None if it is not
        (closed already, extended, or without an end)."""
        if not self.has_expired(now):
            return None
        return self.close(CloseReason.EXPIRED, now=now)


_DRAFT_FIELDS = set(PostingDraft.model_fields)

# Words for search: letters and digits, keeping the symbols of names like c++, c#, node.js.
_WORD = re.compile(r"[\w][\w+#.]*")
MAX_SEARCH_TOKENS = 1000


def words(text: str) -> list[str]:
    """Lower-case words of `text`, in order, without trailing punctuation or repeats."""
    found = (word.rstrip(".").lower() for word in _WORD.findall(text))
    return list(dict.fromkeys(word for word in found if word))


def search_tokens(posting: PostingDraft) -> list[str]:
    """What `q` matches: every word of the title, company, description and skills, plus
    each whole skill ("machine learning"). Bounded, so one huge description cannot bloat
    the index."""
    text = " ".join([posting.title, posting.company, posting.description, *posting.skills])
    return list(dict.fromkeys([*posting.skills, *words(text)]))[:MAX_SEARCH_TOKENS]


class PostingSearch(BaseModel):
    """The filters of `GET /postings`; every one given must hold."""

    model_config = ConfigDict(frozen=True)

    q: list[str] = Field(default_factory=list, description="words, all present")
    skills: list[str] = Field(default_factory=list, description="skills, all required")
    city: str | None = None
    country: str | None = None
    workplace: Workplace | None = None
    seniority: Seniority | None = None
    employment_type: EmploymentType | None = None
    min_salary: NonNegativeInt64 | None = Field(default=None, description="salary max at least")
    org: str | None = None
    status: PostingStatus = PostingStatus.OPEN

    @classmethod
    def from_query(cls, *, q: str | None, skills: str | None, **filters: Any) -> PostingSearch:
        return cls(
            q=words(q or ""),
            skills=normalise_skills((skills or "").split(",")),
            **{name: value for name, value in filters.items() if value is not None},
        )

"""Postings: what a posting is, the rules it obeys, and the events each change records.

Pure: no I/O and no framework imports, so every rule is unit-tested without a database.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    NonNegativeInt,
    model_validator,
)
from pydantic_extra_types.country import CountryAlpha2
from pydantic_extra_types.currency_code import ISO4217

from hirestream.shared.events.postings import (
    EmploymentType,
    PostingCreated,
    PostingStatus,
    SalaryPeriod,
    Seniority,
    Workplace,
)
from hirestream.shared.events.types import UtcDateTime

MAX_SKILLS = 30
MAX_SKILL_LENGTH = 40


def normalise_skills(skills: list[str]) -> list[str]:
    """Lowercase, trimmed, inner spaces collapsed, empty ones dropped, first occurrence kept."""
    cleaned = (" ".join(skill.split()).lower() for skill in skills)
    unique = list(dict.fromkeys(skill for skill in cleaned if skill))
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
    min: NonNegativeInt = Field(description="integer minor units (cents)")
    max: NonNegativeInt = Field(description="integer minor units (cents)")
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


class Posting(PostingDraft):
    """A posting as the service holds it. `version` counts its changes, starting at 1."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    posting_id: str
    org: str
    status: PostingStatus
    version: int = Field(ge=1)
    created_at: UtcDateTime
    updated_at: UtcDateTime

    @classmethod
    def publish(
        cls, draft: PostingDraft, *, posting_id: str, org: str, now: datetime
    ) -> tuple[Posting, PostingCreated]:
        """A new open posting, and the `posting.created` payload that announces it."""
        posting = cls(
            **draft.model_dump(),
            posting_id=posting_id,
            org=org,
            status=PostingStatus.OPEN,
            version=1,
            created_at=now,
            updated_at=now,
        )
        return posting, PostingCreated.model_validate(posting.model_dump())

"""The rules of a posting, without a database."""

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from hirestream.postings.domain import MAX_SKILLS, Posting, PostingDraft, normalise_skills
from hirestream.shared.events.postings import PostingStatus

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def draft_fields(**changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "title": "Senior Backend Developer",
        "company": "Acme Corp",
        "description": "Build event-driven services in Python on Kafka and MongoDB.",
        "location": {"city": "San Francisco", "region": "CA", "country": "US"},
        "workplace": "hybrid",
        "employment_type": "full_time",
        "seniority": "senior",
        "skills": ["Python", " kafka ", "python", "MongoDB"],
        "salary": {"min": 15_000_000, "max": 20_000_000, "currency": "USD", "period": "year"},
        "contact_email": "jobs@acme.example",
    }
    fields.update(changes)
    return fields


def test_skills_are_normalised() -> None:
    draft = PostingDraft.model_validate(draft_fields())
    assert draft.skills == ["python", "kafka", "mongodb"]


def test_skill_normalisation_collapses_spaces_and_drops_empties() -> None:
    assert normalise_skills(["  Machine   Learning ", "", "  "]) == ["machine learning"]


def test_too_many_skills_are_refused() -> None:
    with pytest.raises(ValidationError, match="at most"):
        PostingDraft.model_validate(draft_fields(skills=[f"s{i}" for i in range(MAX_SKILLS + 1)]))


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"title": "ab"}, "title"),
        ({"description": "too short"}, "description"),
        ({"location": {"city": "X", "country": "XX"}}, "country"),
        ({"salary": {"min": 2, "max": 1, "currency": "USD"}}, "salary"),
        ({"salary": {"min": 1, "max": 2, "currency": "DOLLARS"}}, "currency"),
        ({"workplace": "moon"}, "workplace"),
        ({"contact_email": "not-an-email"}, "contact_email"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_invalid_drafts_name_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        PostingDraft.model_validate(draft_fields(**changes))
    locations = {".".join(str(p) for p in err["loc"]) for err in caught.value.errors()}
    assert any(field in location for location in locations), locations


def test_publishing_opens_version_one_and_records_posting_created() -> None:
    draft = PostingDraft.model_validate(draft_fields())
    posting, created = Posting.publish(draft, posting_id="p1", org="acme", now=NOW)
    assert posting.status is PostingStatus.OPEN
    assert posting.version == 1
    assert posting.created_at == posting.updated_at == NOW
    assert created.posting_id == "p1"
    assert created.org == "acme"
    assert created.skills == ["python", "kafka", "mongodb"]
    assert created.salary is not None
    assert created.salary.currency == "USD"
    assert created.version == 1

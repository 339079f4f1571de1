"""The rules of a posting, without a database."""

from typing import Any

import pytest
from pydantic import ValidationError

from hirestream.postings.domain import (
    MAX_SKILLS,
    Posting,
    PostingChanges,
    PostingDraft,
    PostingIsClosed,
    normalise_skills,
    search_tokens,
    words,
)
from hirestream.shared.events.postings import CloseReason, PostingStatus
from tests.support.factories import posting_body
from tests.support.postings import NOW, changes, closed_posting, draft, open_posting

MESSY_SKILLS = ["Python", " kafka ", "python", "MongoDB"]


def test_skills_are_normalised() -> None:
    assert draft(skills=MESSY_SKILLS).skills == ["python", "kafka", "mongodb"]


def test_skill_normalisation_collapses_spaces_and_drops_empties() -> None:
    assert normalise_skills(["  Machine   Learning ", "", "  "]) == ["machine learning"]


def test_too_many_skills_are_refused() -> None:
    with pytest.raises(ValidationError, match="at most"):
        draft(skills=[f"s{i}" for i in range(MAX_SKILLS + 1)])


@pytest.mark.parametrize(
    ("fields", "field"),
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
def test_invalid_drafts_name_the_field(fields: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        PostingDraft.model_validate(posting_body(**fields))
    locations = {".".join(str(p) for p in err["loc"]) for err in caught.value.errors()}
    assert any(field in location for location in locations), locations


def test_publishing_opens_version_one_and_records_posting_created() -> None:
    posting, created = Posting.publish(
        draft(skills=MESSY_SKILLS), posting_id="p1", org="acme", now=NOW
    )
    assert posting.status is PostingStatus.OPEN
    assert posting.version == 1
    assert posting.created_at == posting.updated_at == NOW
    assert created.posting_id == "p1"
    assert created.org == "acme"
    assert created.skills == ["python", "kafka", "mongodb"]
    assert created.salary is not None
    assert created.salary.currency == "USD"
    assert created.version == 1


# --- changes (JSON Merge Patch) ------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        pytest.param({"title": "x"}, "title", id="title-too-short"),
        pytest.param({"title": None}, "title", id="required-field-null"),
        pytest.param({"skills": None}, "skills", id="skills-null"),
        pytest.param({"remote_ok": True}, "remote_ok", id="unknown-field"),
        pytest.param({"location": {"city": "Paris"}}, "location.country", id="partial-location"),
        pytest.param(
            {"salary": {"min": 9, "max": 1, "currency": "USD"}}, "salary", id="salary-min-above-max"
        ),
    ],
)
def test_invalid_changes_name_the_field(fields: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        PostingChanges.model_validate(fields)
    locations = {".".join(str(p) for p in err["loc"]) for err in caught.value.errors()}
    assert any(location.startswith(field) for location in locations), locations


def test_a_change_must_name_a_field() -> None:
    with pytest.raises(ValidationError, match="at least one field"):
        PostingChanges.model_validate({})


def test_a_change_replaces_the_fields_it_names_and_keeps_the_others() -> None:
    posting = open_posting()

    changed, updated = posting.change(
        changes(location={"city": "Austin", "country": "US"}, contact_email=None), now=NOW
    )

    assert changed.location.city == "Austin"
    assert changed.location.region is None  # replaced whole, not merged
    assert changed.contact_email is None
    assert changed.title == posting.title
    assert (changed.version, changed.created_at) == (2, posting.created_at)
    assert updated is not None
    assert updated.version == 2


def test_a_change_to_the_same_values_is_no_change() -> None:
    posting = open_posting()

    unchanged, updated = posting.change(
        changes(skills=["PYTHON", "kafka", "MongoDB", " Kubernetes "]), now=NOW
    )

    assert (unchanged, updated) == (posting, None)


def test_a_closed_posting_takes_no_change_and_no_second_close() -> None:
    closed = closed_posting()

    with pytest.raises(PostingIsClosed):
        closed.change(changes(title="Lead Developer"), now=NOW)
    with pytest.raises(PostingIsClosed):
        closed.close(CloseReason.CANCELLED, now=NOW)


def test_closing_makes_the_next_version_and_records_posting_closed() -> None:
    closed, event = open_posting().close(CloseReason.EXPIRED, now=NOW)

    assert (closed.status, closed.version, closed.close_reason) == (
        PostingStatus.CLOSED,
        2,
        CloseReason.EXPIRED,
    )
    assert closed.closed_at == closed.updated_at == NOW
    assert (event.version, event.reason, event.closed_at) == (2, CloseReason.EXPIRED, NOW)


# --- search words ------------------------------------------------------------------------


def test_words_are_lower_case_without_trailing_dots_or_repeats() -> None:
    assert words("Node.js and C++, node.js. C#!") == ["node.js", "and", "c++", "c#"]


def test_search_tokens_hold_each_whole_skill_and_every_word() -> None:
    tokens = search_tokens(draft(skills=["Machine Learning", "Kafka"]))
    assert tokens[:2] == ["machine learning", "kafka"]
    assert {"senior", "backend", "acme", "machine", "learning", "mongodb"} <= set(tokens)

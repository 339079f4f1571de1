"""The rules of an application, without a database: the status workflow and who may move it,
the match score against a posting's skills, the form a candidate sends, and submitting."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from hirestream.applications.domain import (
    Application,
    ApplicationForm,
    IllegalMove,
    Party,
    PostingNotOpen,
    PostingView,
    WrongParty,
    match_skills,
)
from hirestream.shared.events.applications import ApplicationStatus, Candidate, Match
from hirestream.shared.events.postings import CloseReason, PostingClosed, PostingStatus
from tests.support.applications import (
    ALLOWED_FROM,
    CANDIDATE_USER,
    EMPLOYER_USER,
    FINAL,
    ILLEGAL,
    LATER,
    LEGAL,
    NOW,
    POSTING_SKILLS,
    application_body,
    application_in,
    open_posting,
    pair_id,
    party_of,
    user_of,
)

S = ApplicationStatus


# --- the workflow ---------------------------------------------------------------------------


@pytest.mark.parametrize(("current", "target"), list(LEGAL), ids=pair_id)
def test_a_legal_move_bumps_the_version_and_records_the_change(
    current: ApplicationStatus, target: ApplicationStatus
) -> None:
    party = LEGAL[(current, target)]
    application = application_in(current, version=4)

    moved, event = application.move(
        target, by=party, user_id=user_of(party), reason=None, now=LATER
    )

    assert moved.status is target
    assert moved.version == 5
    assert moved.updated_at == LATER
    assert moved.submitted_at == NOW
    assert [(c.from_status, c.to_status, c.changed_by) for c in moved.history] == [
        (current, target, user_of(party))
    ]
    assert moved.history[0].changed_at == LATER
    assert application.status is current  # the original is left as it was
    assert (event.from_status, event.to_status) == (current, target)
    assert event.changed_by == user_of(party)
    assert event.version == 5
    assert event.changed_at == LATER
    assert event.application_id == application.application_id
    assert event.posting_id == application.posting_id
    assert event.org == "acme"
    assert event.candidate_id == CANDIDATE_USER


def test_the_pipeline_from_submitted_to_hired_counts_every_step() -> None:
    application = application_in(S.SUBMITTED, version=1)
    for target in (S.SCREENING, S.INTERVIEW, S.OFFER, S.HIRED):
        application, event = application.move(
            target, by=Party.EMPLOYER, user_id=EMPLOYER_USER, reason=None, now=LATER
        )
        assert event.version == application.version

    assert application.status is S.HIRED
    assert application.version == 5
    assert [change.to_status for change in application.history] == [
        S.SCREENING,
        S.INTERVIEW,
        S.OFFER,
        S.HIRED,
    ]


def test_a_rejection_carries_its_reason_in_history_and_event() -> None:
    reason = "We hired a candidate with more Kubernetes experience."
    moved, event = application_in(S.INTERVIEW).move(
        S.REJECTED, by=Party.EMPLOYER, user_id=EMPLOYER_USER, reason=reason, now=LATER
    )

    assert moved.history[-1].reason == reason
    assert event.reason == reason


@pytest.mark.parametrize(("current", "target"), ILLEGAL, ids=pair_id)
def test_an_illegal_move_is_refused_naming_the_allowed_moves(
    current: ApplicationStatus, target: ApplicationStatus
) -> None:
    party = party_of(target)  # the right party, so only the workflow can refuse it

    with pytest.raises(IllegalMove) as caught:
        application_in(current).move(
            target, by=party, user_id=user_of(party), reason=None, now=LATER
        )

    assert caught.value.current is current
    assert caught.value.target is target
    assert set(caught.value.allowed) == ALLOWED_FROM[current]


@pytest.mark.parametrize("current", FINAL)
def test_nothing_moves_out_of_a_final_status(current: ApplicationStatus) -> None:
    with pytest.raises(IllegalMove) as caught:
        application_in(current).move(
            S.REJECTED, by=Party.EMPLOYER, user_id=EMPLOYER_USER, reason=None, now=LATER
        )

    assert caught.value.allowed == []


def test_the_allowed_moves_out_of_screening_are_named() -> None:
    with pytest.raises(IllegalMove) as caught:
        application_in(S.SCREENING).move(
            S.HIRED, by=Party.EMPLOYER, user_id=EMPLOYER_USER, reason=None, now=LATER
        )

    assert caught.value.allowed == [S.INTERVIEW, S.REJECTED, S.WITHDRAWN]
    assert "screening cannot move to hired" in str(caught.value)


@pytest.mark.parametrize("current", list(S))
@pytest.mark.parametrize("target", [status for status in S if status is not S.WITHDRAWN])
def test_a_candidate_may_only_withdraw(
    current: ApplicationStatus, target: ApplicationStatus
) -> None:
    """Checked before the workflow: even an illegal target is WrongParty for a candidate."""
    with pytest.raises(WrongParty) as caught:
        application_in(current).move(
            target, by=Party.CANDIDATE, user_id=CANDIDATE_USER, reason=None, now=LATER
        )

    assert caught.value.needed is Party.EMPLOYER
    assert caught.value.target is target


@pytest.mark.parametrize("current", list(S))
def test_an_employer_may_not_withdraw(current: ApplicationStatus) -> None:
    with pytest.raises(WrongParty) as caught:
        application_in(current).move(
            S.WITHDRAWN, by=Party.EMPLOYER, user_id=EMPLOYER_USER, reason=None, now=LATER
        )

    assert caught.value.needed is Party.CANDIDATE


def test_wrong_party_is_checked_before_an_illegal_move() -> None:
    # hired is final AND a candidate may not move to screening: the party answer wins.
    with pytest.raises(WrongParty):
        application_in(S.HIRED).move(
            S.SCREENING, by=Party.CANDIDATE, user_id=CANDIDATE_USER, reason=None, now=LATER
        )


def test_a_candidate_cannot_withdraw_twice() -> None:
    with pytest.raises(IllegalMove):
        application_in(S.WITHDRAWN).move(
            S.WITHDRAWN, by=Party.CANDIDATE, user_id=CANDIDATE_USER, reason=None, now=LATER
        )


# --- the match score ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("candidate", "score"),
    [
        pytest.param(["python", "kafka", "mongodb", "kubernetes"], 1.0, id="all"),
        pytest.param(["python", "kafka", "mongodb"], 0.75, id="three-of-four"),
        pytest.param(["python", "kafka"], 0.5, id="two-of-four"),
        pytest.param(["kubernetes"], 0.25, id="one-of-four"),
        pytest.param(["rust", "go"], 0.0, id="none"),
        pytest.param([], 0.0, id="no-candidate-skills"),
    ],
)
def test_score_is_matched_over_posting_skills(candidate: list[str], score: float) -> None:
    assert match_skills(candidate, POSTING_SKILLS).score == score


@pytest.mark.parametrize(
    ("posting", "candidate", "score"),
    [
        pytest.param(["python", "sql", "aws"], ["python"], 0.333, id="one-third-down"),
        pytest.param(["python", "sql", "aws"], ["python", "sql"], 0.667, id="two-thirds-up"),
        pytest.param([f"skill-{n}" for n in range(7)], ["skill-0"], 0.143, id="one-seventh"),
    ],
)
def test_score_is_rounded_to_three_places(
    posting: list[str], candidate: list[str], score: float
) -> None:
    assert match_skills(candidate, posting).score == score


def test_score_is_one_when_the_posting_names_no_skills() -> None:
    match = match_skills(["python", "kafka"], [])

    assert match == Match(score=1.0, matched_skills=[], missing_skills=[])


def test_skills_compare_regardless_of_case_and_whitespace() -> None:
    match = match_skills(["  PYTHON ", "Machine   Learning"], ["python", "machine learning", "Go"])

    assert match.matched_skills == ["python", "machine learning"]
    assert match.missing_skills == ["go"]
    assert match.score == 0.667


def test_matched_and_missing_follow_the_postings_order() -> None:
    match = match_skills(["kubernetes", "python"], POSTING_SKILLS)

    assert match.matched_skills == ["python", "kubernetes"]
    assert match.missing_skills == ["kafka", "mongodb"]


def test_extra_candidate_skills_do_not_change_the_score() -> None:
    plain = match_skills(["python", "kafka"], POSTING_SKILLS)
    with_extras = match_skills(["python", "kafka", "rust", "terraform", "react"], POSTING_SKILLS)

    assert with_extras == plain


def test_a_skill_the_posting_repeats_counts_once() -> None:
    assert match_skills(["python"], ["python", "Python ", "kafka"]).score == 0.5


# --- the application form -------------------------------------------------------------------


def test_the_form_normalises_skills() -> None:
    form = ApplicationForm.model_validate(
        application_body(skills=["  Python ", "python", "Machine   Learning", "", "KAFKA"])
    )

    assert form.skills == ["python", "machine learning", "kafka"]


def test_the_form_trims_the_name() -> None:
    assert (
        ApplicationForm.model_validate(application_body(name="  Maya Okafor ")).name
        == "Maya Okafor"
    )


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        pytest.param({"linkedin": "https://linkedin.com/in/maya"}, "linkedin", id="unknown-field"),
        pytest.param({"email": "maya.okafor-at-example.com"}, "email", id="email-without-at"),
        pytest.param({"email": "maya@"}, "email", id="email-without-domain"),
        pytest.param({"resume_url": "maya-okafor.pdf"}, "resume_url", id="resume-not-a-url"),
        pytest.param(
            {"resume_url": "ftp://files.example.com/cv.pdf"}, "resume_url", id="resume-not-http"
        ),
        pytest.param({"name": "   "}, "name", id="blank-name"),
        pytest.param({"skills": [f"skill-{n}" for n in range(51)]}, "skills", id="too-many-skills"),
        pytest.param({"cover_letter": "x" * 10_001}, "cover_letter", id="cover-letter-too-long"),
    ],
)
def test_an_invalid_form_is_refused_naming_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        ApplicationForm.model_validate(application_body(**changes))

    assert {str(error["loc"][0]) for error in caught.value.errors()} == {field}


@pytest.mark.parametrize("field", ["name", "email", "resume_url", "consent"])
def test_a_form_without_a_required_field_is_refused(field: str) -> None:
    fields = application_body()
    del fields[field]

    with pytest.raises(ValidationError) as caught:
        ApplicationForm.model_validate(fields)

    assert {str(error["loc"][0]) for error in caught.value.errors()} == {field}


def test_skills_and_cover_letter_are_optional() -> None:
    form = ApplicationForm.model_validate(
        {
            "name": "Maya Okafor",
            "email": "maya.okafor@example.com",
            "resume_url": "https://cdn.example.com/resumes/maya-okafor.pdf",
            "consent": {"processing": True},
        }
    )

    assert form.skills == []
    assert form.cover_letter is None


# --- submitting -----------------------------------------------------------------------------


def test_submitting_fills_the_application_at_version_one() -> None:
    form = ApplicationForm.model_validate(application_body())

    application, _ = Application.submit(
        form,
        application_id="6650f1c2e4b0a1b2c3d4e600",
        candidate_id=CANDIDATE_USER,
        posting=open_posting(),
        now=NOW,
    )

    assert application.application_id == "6650f1c2e4b0a1b2c3d4e600"
    assert application.posting_id == "6650f1c2e4b0a1b2c3d4e5f6"
    assert application.org == "acme"
    assert application.candidate == Candidate(
        candidate_id=CANDIDATE_USER, name="Maya Okafor", email="maya.okafor@example.com"
    )
    assert application.resume_url == "https://cdn.example.com/resumes/maya-okafor.pdf"
    assert application.skills == ["python", "kafka", "postgresql"]
    assert application.match == Match(
        score=0.5, matched_skills=["python", "kafka"], missing_skills=["mongodb", "kubernetes"]
    )
    assert application.status is S.SUBMITTED
    assert application.version == 1
    assert application.submitted_at == application.updated_at == NOW
    assert application.history == []


def test_submitting_records_application_submitted_with_the_same_fields() -> None:
    form = ApplicationForm.model_validate(application_body())

    application, submitted = Application.submit(
        form,
        application_id="6650f1c2e4b0a1b2c3d4e600",
        candidate_id=CANDIDATE_USER,
        posting=open_posting(),
        now=NOW,
    )

    assert submitted.application_id == application.application_id
    assert submitted.posting_id == application.posting_id
    assert submitted.org == "acme"
    assert submitted.candidate == application.candidate
    assert submitted.match == application.match
    assert submitted.cover_letter == form.cover_letter
    assert submitted.status is S.SUBMITTED
    assert submitted.version == 1
    assert submitted.submitted_at == NOW


def test_a_posting_without_skills_scores_one() -> None:
    form = ApplicationForm.model_validate(application_body())

    application, _ = Application.submit(
        form,
        application_id="6650f1c2e4b0a1b2c3d4e600",
        candidate_id=CANDIDATE_USER,
        posting=open_posting(skills=[]),
        now=NOW,
    )

    assert application.match.score == 1.0


def test_submitting_to_a_closed_posting_is_refused() -> None:
    form = ApplicationForm.model_validate(application_body())
    closed = open_posting(
        version=2, status=PostingStatus.CLOSED, close_reason=CloseReason.FILLED, closed_at=NOW
    )

    with pytest.raises(PostingNotOpen):
        Application.submit(
            form,
            application_id="6650f1c2e4b0a1b2c3d4e600",
            candidate_id=CANDIDATE_USER,
            posting=closed,
            now=NOW,
        )


def test_submitting_to_a_posting_known_only_from_its_closing_is_refused() -> None:
    form = ApplicationForm.model_validate(application_body())
    closing = PostingClosed(
        posting_id="6650f1c2e4b0a1b2c3d4e5f6",
        org="acme",
        reason=CloseReason.CANCELLED,
        version=2,
        closed_at=NOW,
    )

    with pytest.raises(PostingNotOpen):
        Application.submit(
            form,
            application_id="6650f1c2e4b0a1b2c3d4e600",
            candidate_id=CANDIDATE_USER,
            posting=PostingView.from_closed(closing),
            now=NOW,
        )


def test_an_application_needs_consent_to_processing() -> None:
    with pytest.raises(ValidationError) as caught:
        ApplicationForm.model_validate(application_body(consent={"processing": False}))
    assert [error["loc"] for error in caught.value.errors()] == [("consent", "processing")]


def test_consent_is_stored_and_carried_in_the_event() -> None:
    form = ApplicationForm.model_validate(
        application_body(consent={"processing": True, "keep_profile": True})
    )
    application, submitted = Application.submit(
        form, application_id="a1", candidate_id="c1", posting=open_posting(), now=NOW
    )
    assert application.consent is not None
    assert application.consent.keep_profile is True
    assert submitted.consent == application.consent
    assert submitted.consent is not None
    assert submitted.consent.given_at == NOW

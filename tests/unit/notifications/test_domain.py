"""Who is told what, on which channel, and what a job alert matches: the notifications
domain without a database or a broker (plus the webhook URL check, which needs no network
for IP literals)."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from hirestream.notifications.domain import (
    APPLICATION_STATUS_CHANGED,
    APPLICATION_SUBMITTED,
    MATCH_ALL,
    POSTING_CLOSED,
    POSTING_CREATED,
    AlertCriteria,
    ApplicationFacts,
    PlannedNotification,
    Preferences,
    WebhookRegistration,
    backoff_s,
    forbidden_address,
    notification_id,
    org_recipient,
    plan_application_submitted,
    plan_posting_created,
    plan_status_changed,
    posting_keys,
    sign,
    user_recipient,
)
from hirestream.notifications.webhooks import UnsafeWebhookUrl, check_webhook_url
from hirestream.shared.events.applications import (
    ApplicationStatus,
    ApplicationStatusChanged,
    ApplicationSubmitted,
)
from hirestream.shared.events.notifications import Channel
from hirestream.shared.events.postings import PostingCreated

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
EVENT_ID = "0b9e6f0e-2c61-4a53-9d3c-6b0f5d1f2a77"
CANDIDATE = "cand-7f3a9c1e"
OTHER_CANDIDATE = "cand-2b8d4e60"
ORG = "acme"
POSTING_ID = "6650f1c2e4b0a1b2c3d4e5f6"
APPLICATION_ID = "6650f9a0e4b0a1b2c3d4e777"
CANDIDATE_EMAIL = "ada.lovelace@example.com"
CONTACT_EMAIL = "hiring@acme.example"

IN_APP, EMAIL, WEBHOOK = Channel.IN_APP, Channel.EMAIL, Channel.WEBHOOK


def posting(**changes: Any) -> PostingCreated:
    fields: dict[str, Any] = {
        "posting_id": POSTING_ID,
        "org": ORG,
        "title": "Senior Backend Developer",
        "company": "Acme Corp",
        "description": "Design and run event-driven services in Python on Kafka and MongoDB.",
        "location": {"city": "Seattle", "region": "WA", "country": "US"},
        "workplace": "hybrid",
        "employment_type": "full_time",
        "seniority": "senior",
        "skills": ["python", "kafka", "mongodb", "kubernetes"],
        "salary": {"min": 16_000_000, "max": 19_000_000, "currency": "USD", "period": "year"},
        "contact_email": CONTACT_EMAIL,
        "status": "open",
        "version": 1,
        "created_at": NOW,
        "updated_at": NOW,
    }
    fields.update(changes)
    return PostingCreated.model_validate(fields)


def submitted(**changes: Any) -> ApplicationSubmitted:
    fields: dict[str, Any] = {
        "application_id": APPLICATION_ID,
        "posting_id": POSTING_ID,
        "org": ORG,
        "candidate": {"candidate_id": CANDIDATE, "name": "Ada Lovelace", "email": CANDIDATE_EMAIL},
        "resume_url": "https://cv.example.com/ada-lovelace.pdf",
        "cover_letter": "I have run Kafka in production for six years.",
        "skills": ["python", "kafka"],
        "match": {
            "score": 0.5,
            "matched_skills": ["python", "kafka"],
            "missing_skills": ["mongodb", "kubernetes"],
        },
        "status": "submitted",
        "version": 1,
        "submitted_at": NOW,
    }
    fields.update(changes)
    return ApplicationSubmitted.model_validate(fields)


def status_changed(to_status: ApplicationStatus, **changes: Any) -> ApplicationStatusChanged:
    fields: dict[str, Any] = {
        "application_id": APPLICATION_ID,
        "posting_id": POSTING_ID,
        "org": ORG,
        "candidate_id": CANDIDATE,
        "from_status": "submitted",
        "to_status": to_status,
        "changed_by": CANDIDATE if to_status is ApplicationStatus.WITHDRAWN else "recruiter-ana",
        "version": 2,
        "changed_at": NOW,
    }
    fields.update(changes)
    return ApplicationStatusChanged.model_validate(fields)


FACTS = ApplicationFacts(
    application_id=APPLICATION_ID,
    candidate_id=CANDIDATE,
    candidate_name="Ada Lovelace",
    candidate_email=CANDIDATE_EMAIL,
    posting_id=POSTING_ID,
    posting_title="Senior Backend Developer",
    org=ORG,
    contact_email=CONTACT_EMAIL,
)


def routes(plan: list[PlannedNotification]) -> set[tuple[str, Channel, str | None]]:
    """Who gets what, on which channel, at which address."""
    return {(planned.recipient, planned.channel, planned.email) for planned in plan}


# ---------------------------------------------------------------------- notification ids


def test_notification_id_is_the_same_for_the_same_event_recipient_and_channel() -> None:
    first = notification_id(EVENT_ID, user_recipient(CANDIDATE), EMAIL)
    assert first == notification_id(EVENT_ID, user_recipient(CANDIDATE), EMAIL)
    assert uuid.UUID(first).version == 5


def test_notification_id_differs_per_event_recipient_and_channel() -> None:
    ids = {
        notification_id(EVENT_ID, user_recipient(CANDIDATE), EMAIL),
        notification_id(str(uuid.uuid4()), user_recipient(CANDIDATE), EMAIL),
        notification_id(EVENT_ID, user_recipient(OTHER_CANDIDATE), EMAIL),
        notification_id(EVENT_ID, org_recipient(ORG), EMAIL),
        notification_id(EVENT_ID, user_recipient(CANDIDATE), IN_APP),
        notification_id(EVENT_ID, user_recipient(CANDIDATE), WEBHOOK),
    }
    assert len(ids) == 6


# --------------------------------------------------------------------------- preferences


@pytest.mark.parametrize(
    ("kind", "wanted"),
    [
        (POSTING_CREATED, {IN_APP, EMAIL}),
        (POSTING_CLOSED, {IN_APP, EMAIL}),
        (APPLICATION_SUBMITTED, {IN_APP, EMAIL, WEBHOOK}),
        (APPLICATION_STATUS_CHANGED, {IN_APP, EMAIL, WEBHOOK}),
    ],
)
def test_default_preferences_want_the_default_channels(kind: str, wanted: set[Channel]) -> None:
    preferences = Preferences()
    assert {channel for channel in Channel if preferences.wants(kind, channel)} == wanted


def test_an_override_replaces_the_channels_of_its_kind_only() -> None:
    preferences = Preferences(channels={APPLICATION_SUBMITTED: [IN_APP]})
    assert preferences.wants(APPLICATION_SUBMITTED, IN_APP)
    assert not preferences.wants(APPLICATION_SUBMITTED, EMAIL)
    assert preferences.wants(APPLICATION_STATUS_CHANGED, EMAIL)
    assert preferences.effective() == {
        POSTING_CREATED: [EMAIL, IN_APP],
        POSTING_CLOSED: [EMAIL, IN_APP],
        APPLICATION_SUBMITTED: [IN_APP],
        APPLICATION_STATUS_CHANGED: [EMAIL, IN_APP, WEBHOOK],
    }


def test_an_empty_channel_list_turns_a_kind_off() -> None:
    preferences = Preferences(channels={POSTING_CREATED: []})
    assert not any(preferences.wants(POSTING_CREATED, channel) for channel in Channel)


def test_unknown_event_kinds_are_refused() -> None:
    with pytest.raises(ValidationError, match=r"unknown event kinds \['posting.deleted'\]"):
        Preferences.model_validate({"channels": {"posting.deleted": ["email"]}})


def test_unknown_channels_are_refused() -> None:
    with pytest.raises(ValidationError):
        Preferences.model_validate({"channels": {POSTING_CREATED: ["sms"]}})


# --------------------------------------------------------------------------------- alerts


@pytest.mark.parametrize(
    ("criteria", "changes"),
    [
        ({"skills": ["Python", "Kafka"]}, {}),
        ({"q": "event-driven services"}, {}),
        ({"q": "Acme kubernetes"}, {}),  # company name and skills count as words
        ({"city": "sEATTLE"}, {}),
        ({"country": "us"}, {}),
        ({"workplace": "hybrid"}, {}),
        ({"seniority": "senior"}, {}),
        ({"min_salary": 19_000_000}, {}),  # equal to the posting's max
        ({}, {}),
        ({}, {"salary": None, "skills": []}),
    ],
    ids=[
        "skills-subset",
        "q-words",
        "q-company-and-skill",
        "city-any-case",
        "country-any-case",
        "workplace",
        "seniority",
        "min-salary-equal-to-max",
        "empty-alert",
        "empty-alert-bare-posting",
    ],
)
def test_alert_matches_when_every_given_criterion_holds(
    criteria: dict[str, Any], changes: dict[str, Any]
) -> None:
    assert AlertCriteria.model_validate(criteria).matches(posting(**changes))


@pytest.mark.parametrize(
    ("criteria", "changes"),
    [
        ({"skills": ["python", "rust"]}, {}),
        ({"q": "event-driven golang"}, {}),
        ({"city": "Portland"}, {}),
        ({"country": "CA"}, {}),
        ({"workplace": "remote"}, {}),
        ({"seniority": "junior"}, {}),
        ({"min_salary": 19_000_001}, {}),
        ({"min_salary": 1}, {"salary": None}),
        ({"skills": ["python"], "city": "Portland"}, {}),
    ],
    ids=[
        "skill-missing",
        "q-word-missing",
        "other-city",
        "other-country",
        "other-workplace",
        "other-seniority",
        "salary-max-below-min",
        "no-salary-with-min-salary",
        "one-criterion-of-two-fails",
    ],
)
def test_alert_does_not_match_when_a_criterion_fails(
    criteria: dict[str, Any], changes: dict[str, Any]
) -> None:
    assert not AlertCriteria.model_validate(criteria).matches(posting(**changes))


@pytest.mark.parametrize(
    ("criteria", "anchor"),
    [
        (
            {
                "city": "Lisbon",
                "skills": ["Go"],
                "q": "platform",
                "country": "PT",
                "seniority": "mid",
                "workplace": "remote",
            },
            "city:lisbon",
        ),
        (
            {
                "skills": ["Go", "gRPC"],
                "q": "platform",
                "country": "PT",
                "seniority": "mid",
                "workplace": "remote",
            },
            "skill:go",
        ),
        (
            {"q": "Platform engineer", "country": "PT", "seniority": "mid", "workplace": "remote"},
            "word:platform",
        ),
        ({"country": "pt", "seniority": "mid", "workplace": "remote"}, "country:PT"),
        ({"seniority": "mid", "workplace": "remote"}, "seniority:mid"),
        ({"workplace": "remote", "min_salary": 5_000_000}, "workplace:remote"),
        ({"min_salary": 5_000_000, "email": "ada@example.com"}, MATCH_ALL),
        ({}, MATCH_ALL),
    ],
    ids=["city", "skills", "words", "country", "seniority", "workplace", "salary-only", "empty"],
)
def test_anchor_is_the_most_selective_criterion(criteria: dict[str, Any], anchor: str) -> None:
    assert AlertCriteria.model_validate(criteria).anchor() == anchor


ALERT_OPTIONS: dict[str, list[Any]] = {
    "city": [None, "seattle", "Berlin"],
    "skills": [[], ["python"], ["Kafka", "python"], ["rust"]],
    "q": [None, "event-driven", "acme python", "Machine Learning"],
    "country": [None, "us", "DE"],
    "seniority": [None, "senior", "mid"],
    "workplace": [None, "hybrid", "remote"],
    "min_salary": [None, 10_000_000],
}

POSTINGS = [
    posting(),
    posting(
        title="Machine Learning Engineer",
        description="Train and serve ranking models with PyTorch.",
        location={"city": "Berlin", "country": "DE"},
        workplace="remote",
        seniority="mid",
        skills=["python", "pytorch"],
        salary=None,
    ),
    posting(location={"city": "SEATTLE", "country": "US"}, workplace="remote", skills=["rust"]),
]


def test_a_matching_posting_always_offers_the_alerts_anchor() -> None:
    """The store reads only alerts anchored on one of the posting's keys (or on "*"): every
    alert a posting matches must be among them, whatever the alert's criteria."""
    matched = 0
    for values in itertools.product(*ALERT_OPTIONS.values()):
        criteria = AlertCriteria.model_validate(dict(zip(ALERT_OPTIONS, values, strict=True)))
        for candidate_posting in POSTINGS:
            if criteria.matches(candidate_posting):
                matched += 1
                assert criteria.anchor() in [*posting_keys(candidate_posting), MATCH_ALL]
    assert matched > 100  # the grid holds many matching pairs, not a vacuous truth


# ------------------------------------------------------------------------------ the plans


def test_a_candidate_with_two_matching_alerts_is_told_once() -> None:
    plan = plan_posting_created(
        posting(), [(CANDIDATE, None), (CANDIDATE, "ada.alerts@example.com")], {}
    )
    assert routes(plan) == {
        (user_recipient(CANDIDATE), IN_APP, None),
        (user_recipient(CANDIDATE), EMAIL, "ada.alerts@example.com"),
    }
    assert len(plan) == 2
    assert plan[0].title == "New job: Senior Backend Developer"


def test_an_alert_without_an_email_is_told_in_app_only() -> None:
    plan = plan_posting_created(
        posting(), [(CANDIDATE, None), (OTHER_CANDIDATE, "grace@example.com")], {}
    )
    assert routes(plan) == {
        (user_recipient(CANDIDATE), IN_APP, None),
        (user_recipient(OTHER_CANDIDATE), IN_APP, None),
        (user_recipient(OTHER_CANDIDATE), EMAIL, "grace@example.com"),
    }


def test_job_alert_preferences_choose_the_channels() -> None:
    preferences = {
        user_recipient(CANDIDATE): Preferences(channels={POSTING_CREATED: [IN_APP]}),
        user_recipient(OTHER_CANDIDATE): Preferences(channels={POSTING_CREATED: []}),
    }
    plan = plan_posting_created(
        posting(),
        [(CANDIDATE, "ada@example.com"), (OTHER_CANDIDATE, "grace@example.com")],
        preferences,
    )
    assert routes(plan) == {(user_recipient(CANDIDATE), IN_APP, None)}


def test_no_matching_alert_means_nobody_is_told() -> None:
    assert plan_posting_created(posting(), [], {}) == []


def test_an_application_tells_the_candidate_and_the_employer_org() -> None:
    plan = plan_application_submitted(submitted(), "Senior Backend Developer", CONTACT_EMAIL, {})
    assert routes(plan) == {
        (user_recipient(CANDIDATE), IN_APP, None),
        (user_recipient(CANDIDATE), EMAIL, CANDIDATE_EMAIL),
        (org_recipient(ORG), IN_APP, None),
        (org_recipient(ORG), EMAIL, CONTACT_EMAIL),
    }
    titles = {planned.recipient: planned.title for planned in plan}
    assert titles[user_recipient(CANDIDATE)] == "Application sent: Senior Backend Developer"
    assert titles[org_recipient(ORG)] == "New applicant for Senior Backend Developer"


def test_the_employer_gets_no_email_without_a_contact_email() -> None:
    plan = plan_application_submitted(submitted(), None, None, {})
    assert routes(plan) == {
        (user_recipient(CANDIDATE), IN_APP, None),
        (user_recipient(CANDIDATE), EMAIL, CANDIDATE_EMAIL),
        (org_recipient(ORG), IN_APP, None),
    }
    assert all(POSTING_ID in planned.title for planned in plan)  # no title known


def test_a_candidate_who_turned_email_off_gets_the_confirmation_in_app_only() -> None:
    preferences = {
        user_recipient(CANDIDATE): Preferences(channels={APPLICATION_SUBMITTED: [IN_APP]})
    }
    plan = plan_application_submitted(submitted(), None, CONTACT_EMAIL, preferences)
    assert (user_recipient(CANDIDATE), EMAIL, CANDIDATE_EMAIL) not in routes(plan)
    assert (user_recipient(CANDIDATE), IN_APP, None) in routes(plan)
    assert (org_recipient(ORG), EMAIL, CONTACT_EMAIL) in routes(plan)


@pytest.mark.parametrize(
    "to_status",
    [
        ApplicationStatus.SCREENING,
        ApplicationStatus.INTERVIEW,
        ApplicationStatus.OFFER,
        ApplicationStatus.HIRED,
        ApplicationStatus.REJECTED,
    ],
)
def test_a_status_change_by_the_employer_tells_the_candidate_only(
    to_status: ApplicationStatus,
) -> None:
    plan = plan_status_changed(status_changed(to_status), FACTS, {})
    assert routes(plan) == {
        (user_recipient(CANDIDATE), IN_APP, None),
        (user_recipient(CANDIDATE), EMAIL, CANDIDATE_EMAIL),
    }
    assert plan[0].title == f"Your application for Senior Backend Developer: {to_status.value}"


def test_a_withdrawal_also_tells_the_employer() -> None:
    plan = plan_status_changed(status_changed(ApplicationStatus.WITHDRAWN), FACTS, {})
    assert routes(plan) == {
        (user_recipient(CANDIDATE), IN_APP, None),
        (user_recipient(CANDIDATE), EMAIL, CANDIDATE_EMAIL),
        (org_recipient(ORG), IN_APP, None),
        (org_recipient(ORG), EMAIL, CONTACT_EMAIL),
    }
    employer = [planned for planned in plan if planned.recipient == org_recipient(ORG)]
    assert employer[0].body == "Ada Lovelace withdrew their application."


def test_a_status_change_of_an_unseen_application_is_told_in_app() -> None:
    plan = plan_status_changed(status_changed(ApplicationStatus.WITHDRAWN), None, {})
    assert routes(plan) == {
        (user_recipient(CANDIDATE), IN_APP, None),
        (org_recipient(ORG), IN_APP, None),
    }


# ------------------------------------------------------------------------------- webhooks


def test_signature_is_the_contracts_hmac_of_timestamp_and_body() -> None:
    secret = "whsec-3f9a1c7e5b2d4f60"
    body = b'{"specversion":"1.0","type":"application.submitted"}'
    timestamp = 1_795_880_000
    expected = hmac.new(
        secret.encode(), b"1795880000." + body, digestmod=hashlib.sha256
    ).hexdigest()
    assert sign(secret, timestamp, body) == f"t=1795880000,v1={expected}"


def test_signature_changes_with_the_body_and_the_secret() -> None:
    body = b'{"id":"a"}'
    signed = sign("whsec-3f9a1c7e5b2d4f60", 1_795_880_000, body)
    assert signed != sign("whsec-3f9a1c7e5b2d4f61", 1_795_880_000, body)
    assert signed != sign("whsec-3f9a1c7e5b2d4f60", 1_795_880_000, b'{"id":"b"}')


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.10",
        "192.168.1.20",
        "169.254.169.254",
        "::1",
        "::ffff:127.0.0.1",
        "fc00::1",
    ],
)
def test_non_public_addresses_are_forbidden(address: str) -> None:
    assert forbidden_address(address)


@pytest.mark.parametrize("address", ["8.8.8.8", "2606:4700::1"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert not forbidden_address(address)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hooks",
        "https://127.0.0.1/hooks",
        "https://10.0.0.7/hooks",
        "https://[::1]/hooks",
        "https://169.254.169.254/latest/meta-data",
        "ftp://hooks.example.com/in",
    ],
)
async def test_webhook_urls_into_our_network_or_not_https_are_refused(url: str) -> None:
    with pytest.raises(UnsafeWebhookUrl):
        await check_webhook_url(url, allow_private=False)


async def test_a_public_https_address_is_accepted() -> None:
    await check_webhook_url("https://8.8.8.8/hooks/hirestream", allow_private=False)


async def test_private_http_targets_are_accepted_when_allowed() -> None:
    await check_webhook_url("http://127.0.0.1:8080/hooks", allow_private=True)


def test_webhook_registration_refuses_unknown_event_types() -> None:
    with pytest.raises(ValidationError, match="unknown event types"):
        WebhookRegistration(
            url="https://hooks.acme.example/in",
            event_types=["application.deleted"],
            secret="whsec-3f9a1c7e5b2d4f60",
        )


# -------------------------------------------------------------------------------- backoff


@pytest.mark.parametrize("attempt", [1, 2, 3, 5, 8, 20])
@pytest.mark.parametrize("jitter", [0.0, 0.25, 0.5, 0.999])
def test_backoff_stays_within_zero_and_the_capped_exponential(attempt: int, jitter: float) -> None:
    wait = backoff_s(attempt, initial_s=1.0, max_s=60.0, jitter=jitter)
    assert 0.0 <= wait <= min(60.0, 2.0 ** (attempt - 1))


def test_backoff_grows_exponentially_until_the_cap() -> None:
    waits = [backoff_s(n, initial_s=0.5, max_s=10.0, jitter=0.5) for n in range(1, 8)]
    assert waits == [0.25, 0.5, 1.0, 2.0, 4.0, 5.0, 5.0]


def test_no_jitter_means_no_wait() -> None:
    assert backoff_s(4, initial_s=1.0, max_s=60.0, jitter=0.0) == 0.0

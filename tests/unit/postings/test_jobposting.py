"""A posting as a schema.org JobPosting (JSON-LD): where the job is (an office, or remote), the
salary in major units per period, the employment type, and Google's required and recommended
properties; and which representation `Accept` asks for."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from hirestream.postings.api import negotiated
from hirestream.postings.app import PostingsSettings, create_app
from hirestream.postings.domain import Posting
from hirestream.postings.jobposting import JSON_LD, job_posting, major_units
from tests.support.jobposting import recommended_findings, required_findings
from tests.support.postings import POSTING_ID, open_posting

JSON = "application/json"
JWT_SECRET = "k" * 16 + "Zq8-w3Rt!pX2vB7n"  # valid: 32 characters, not a placeholder


def salary(amount_min: int, amount_max: int, currency: str, period: str) -> dict[str, Any]:
    return {"min": amount_min, "max": amount_max, "currency": currency, "period": period}


def test_an_office_posting_in_full() -> None:
    posting = open_posting(workplace="onsite")

    assert job_posting(posting) == {
        "@context": "https://schema.org",
        "@type": "JobPosting",
        "identifier": {"@type": "PropertyValue", "name": "Acme Corp", "value": POSTING_ID},
        "title": "Senior Backend Developer",
        "description": posting.description,
        "datePosted": "2026-11-28T12:00:00.000Z",
        "validThrough": "2026-12-28T12:00:00.000Z",
        "employmentType": "FULL_TIME",
        "hiringOrganization": {"@type": "Organization", "name": "Acme Corp"},
        "jobLocation": {
            "@type": "Place",
            "address": {
                "@type": "PostalAddress",
                "addressLocality": "Seattle",
                "addressRegion": "WA",
                "addressCountry": "US",
            },
        },
        "baseSalary": {
            "@type": "MonetaryAmount",
            "currency": "USD",
            "value": {
                "@type": "QuantitativeValue",
                "minValue": 160000,
                "maxValue": 190000,
                "unitText": "YEAR",
            },
        },
        "skills": ["python", "kafka", "mongodb", "kubernetes"],
        "applicationContact": {"@type": "ContactPoint", "email": "hiring@acme.example"},
    }


def test_a_hybrid_posting_is_at_its_office_and_an_address_may_lack_a_region() -> None:
    posting = open_posting(workplace="hybrid", location={"city": "Berlin", "country": "DE"})

    document = job_posting(posting)

    assert document["jobLocation"]["address"] == {
        "@type": "PostalAddress",
        "addressLocality": "Berlin",
        "addressCountry": "DE",
    }
    assert "jobLocationType" not in document


def test_a_remote_posting_is_telecommute_from_its_country() -> None:
    posting = open_posting(workplace="remote", location={"city": "Toronto", "country": "CA"})

    document = job_posting(posting)

    assert document["jobLocationType"] == "TELECOMMUTE"
    assert document["applicantLocationRequirements"] == {"@type": "Country", "name": "CA"}
    assert "jobLocation" not in document


@pytest.mark.parametrize(
    ("given", "low", "high", "unit"),
    [
        pytest.param(salary(16_000_000, 19_000_000, "USD", "year"), 160000, 190000, "YEAR"),
        pytest.param(salary(650_000, 700_050, "EUR", "month"), 6500, 7000.5, "MONTH"),
        pytest.param(salary(3_550, 4_000, "USD", "hour"), 35.5, 40, "HOUR", id="hourly-cents"),
        pytest.param(salary(5_000_000, 7_000_000, "JPY", "year"), 5_000_000, 7_000_000, "YEAR"),
        pytest.param(salary(1_234, 2_500, "KWD", "hour"), 1.234, 2.5, "HOUR", id="three-digits"),
    ],
)
def test_salaries_are_in_major_units_per_period(
    given: dict[str, Any], low: float, high: float, unit: str
) -> None:
    value = job_posting(open_posting(salary=given))["baseSalary"]["value"]
    assert (value["minValue"], value["maxValue"], value["unitText"]) == (low, high, unit)


def test_major_units_are_exact() -> None:
    assert major_units(1, "USD") == 0.01
    assert major_units(10**18 + 1, "JPY") == 10**18 + 1  # an int, not a rounded float
    assert isinstance(major_units(500, "USD"), int)


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        ("full_time", "FULL_TIME"),
        ("part_time", "PART_TIME"),
        ("contract", "CONTRACTOR"),
        ("internship", "INTERN"),
    ],
)
def test_employment_types_map_to_schema_org(ours: str, theirs: str) -> None:
    assert job_posting(open_posting(employment_type=ours))["employmentType"] == theirs


def test_optional_parts_are_left_out_rather_than_null() -> None:
    posting = open_posting(salary=None, contact_email=None, skills=[])

    document = job_posting(posting)

    assert not {"baseSalary", "applicationContact", "skills"} & set(document)
    assert None not in document.values()


def test_a_posting_from_before_expiry_has_no_valid_through() -> None:
    legacy = open_posting().model_copy(update={"expires_at": None})
    assert "validThrough" not in job_posting(legacy)


POSTINGS: dict[str, Posting] = {
    "onsite": open_posting(workplace="onsite"),
    "hybrid-no-region": open_posting(location={"city": "Lyon", "country": "FR"}),
    "remote": open_posting(workplace="remote"),
    "hourly-intern": open_posting(
        employment_type="internship", salary=salary(3_500, 4_000, "USD", "hour")
    ),
}


@pytest.mark.parametrize("posting", POSTINGS.values(), ids=POSTINGS.keys())
def test_googles_required_and_recommended_properties_are_there(posting: Posting) -> None:
    document = job_posting(posting)
    assert required_findings(document) == {}
    assert recommended_findings(document) == {}


def test_the_check_sees_what_is_missing() -> None:
    """The check itself: it finds what a JobPosting without them lacks."""
    document = job_posting(open_posting(salary=None))
    for name in ("title", "hiringOrganization", "jobLocation", "validThrough", "identifier"):
        del document[name]
    document["employmentType"] = "SOMETIMES"

    assert set(required_findings(document)) == {"title", "hiringOrganization", "jobLocation"}
    assert set(recommended_findings(document)) == {
        "validThrough",
        "employmentType",
        "baseSalary",
        "identifier",
    }


# --- which representation ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "chosen"),
    [
        (None, JSON),
        ("", JSON),
        ("*/*", JSON),
        ("application/json", JSON),
        ("application/ld+json", JSON_LD),
        ("Application/LD+JSON", JSON_LD),
        ('application/ld+json; profile="https://schema.org"', JSON_LD),
        ("application/ld+json, application/json;q=0.9", JSON_LD),
        ("application/json, application/ld+json;q=0.5", JSON),
        ("application/ld+json;q=0.5, */*;q=0.1", JSON_LD),
        ("application/ld+json;q=0, */*", JSON),
        ("application/*", JSON),
        ("text/html", JSON),  # nothing acceptable: the default rather than a 406
        ("application/ld+json;q=oops", JSON),
        ("application/ld+json;q=nan", JSON),
        ("application/ld+json;q=inf, application/json;q=0.5", JSON),
    ],
)
def test_accept_chooses_the_representation(accept: str | None, chosen: str) -> None:
    assert negotiated(accept) == chosen


def test_the_openapi_document_gives_the_route_both_media_types_and_410() -> None:
    app = create_app(PostingsSettings.model_validate({"jwt_secret": JWT_SECRET}))
    try:
        operation = app.openapi()["paths"]["/postings/{posting_id}"]["get"]
    finally:
        asyncio.run(app.state.clients.mongo.close())

    answer = operation["responses"]["200"]
    assert answer["content"][JSON]["schema"] == {"$ref": "#/components/schemas/Posting"}
    assert answer["content"][JSON_LD]["schema"]["title"] == "JobPosting"
    assert {"ETag", "Vary"} <= set(answer["headers"])
    assert "410" in operation["responses"]
    assert any(parameter["name"] == "accept" for parameter in operation["parameters"])

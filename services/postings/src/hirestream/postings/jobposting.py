"""A posting as a schema.org JobPosting in JSON-LD, what job boards and search engines read:
the answer of `GET /postings/{id}` to `Accept: application/ld+json`.

Pure: it maps the posting's fields. Which postings are shown this way (those taking
applications) is the use case's rule, `services.advertised_posting`.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hirestream.postings.domain import Posting, Salary
from hirestream.shared.events.postings import EmploymentType, SalaryPeriod, Workplace

JSON_LD = "application/ld+json"
SCHEMA_ORG = "https://schema.org"

EMPLOYMENT_TYPES: dict[EmploymentType, str] = {
    EmploymentType.FULL_TIME: "FULL_TIME",
    EmploymentType.PART_TIME: "PART_TIME",
    EmploymentType.CONTRACT: "CONTRACTOR",
    EmploymentType.INTERNSHIP: "INTERN",
}
SALARY_UNITS: dict[SalaryPeriod, str] = {
    SalaryPeriod.YEAR: "YEAR",
    SalaryPeriod.MONTH: "MONTH",
    SalaryPeriod.HOUR: "HOUR",
}

# ISO 4217 minor-unit digits of the currencies that have other than two.
MINOR_UNIT_DIGITS: dict[str, int] = {
    **dict.fromkeys(
        [
            "BIF",
            "CLP",
            "DJF",
            "GNF",
            "ISK",
            "JPY",
            "KMF",
            "KRW",
            "PYG",
            "RWF",
            "UGX",
            "UYI",
            "VND",
            "VUV",
            "XAF",
            "XOF",
            "XPF",
        ],
        0,
    ),
    **dict.fromkeys(["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"], 3),
    **dict.fromkeys(["CLF", "UYW"], 4),
}


def major_units(amount: int, currency: str) -> int | float:
    """An amount in minor units (cents) in the currency's major units (dollars), as a JSON
    number: 16_000_000 USD cents is 160000, 1_500 JPY is 1500, 1_234 KWD fils is 1.234."""
    value = Decimal(amount).scaleb(-MINOR_UNIT_DIGITS.get(currency, 2))
    return int(value) if value == value.to_integral_value() else float(value)


def base_salary(salary: Salary) -> dict[str, Any]:
    return {
        "@type": "MonetaryAmount",
        "currency": salary.currency,
        "value": {
            "@type": "QuantitativeValue",
            "minValue": major_units(salary.min, salary.currency),
            "maxValue": major_units(salary.max, salary.currency),
            "unitText": SALARY_UNITS[salary.period],
        },
    }


def where(posting: Posting) -> dict[str, Any]:
    """A remote job is done from anywhere in its country (`TELECOMMUTE`); an onsite or hybrid
    one at its address, which is where the job is for a search engine."""
    location = posting.location
    if posting.workplace is Workplace.REMOTE:
        return {
            "jobLocationType": "TELECOMMUTE",
            "applicantLocationRequirements": {"@type": "Country", "name": location.country},
        }
    address = {
        "@type": "PostalAddress",
        "addressLocality": location.city,
        "addressRegion": location.region,
        "addressCountry": location.country,
    }
    return {
        "jobLocation": {
            "@type": "Place",
            "address": {name: value for name, value in address.items() if value is not None},
        }
    }


def job_posting(posting: Posting) -> dict[str, Any]:
    """The JobPosting: Google's required properties (title, description, datePosted,
    hiringOrganization, jobLocation or jobLocationType) and its recommended ones (validThrough
    when the posting has an end, employmentType, baseSalary when it has a salary,
    identifier)."""
    fields = posting.model_dump(mode="json")  # the times as the API writes them
    document: dict[str, Any] = {
        "@context": SCHEMA_ORG,
        "@type": "JobPosting",
        "identifier": {
            "@type": "PropertyValue",
            "name": posting.company,
            "value": posting.posting_id,
        },
        "title": posting.title,
        "description": posting.description,
        "datePosted": fields["created_at"],
        "validThrough": fields["expires_at"],
        "employmentType": EMPLOYMENT_TYPES[posting.employment_type],
        "hiringOrganization": {"@type": "Organization", "name": posting.company},
        **where(posting),
        "baseSalary": base_salary(posting.salary) if posting.salary is not None else None,
        "skills": posting.skills or None,
        "applicationContact": (
            {"@type": "ContactPoint", "email": posting.contact_email}
            if posting.contact_email is not None
            else None
        ),
    }
    return {name: value for name, value in document.items() if value is not None}


_TYPED = {"@type": {"type": "string"}}
_TEXT = {"type": "string"}
_NUMBER = {"type": "number"}

# The OpenAPI schema of the answer, for /openapi.json and /docs.
JOB_POSTING_SCHEMA: dict[str, Any] = {
    "title": "JobPosting",
    "description": "The posting as a schema.org JobPosting in JSON-LD (https://schema.org/"
    "JobPosting): `jobLocation` for onsite and hybrid postings, `jobLocationType: TELECOMMUTE` "
    "with `applicantLocationRequirements` for remote ones; salaries in major units.",
    "type": "object",
    "properties": {
        "@context": {"type": "string", "enum": [SCHEMA_ORG]},
        "@type": {"type": "string", "enum": ["JobPosting"]},
        "identifier": {
            "type": "object",
            "properties": {**_TYPED, "name": _TEXT, "value": {**_TEXT, "description": "the id"}},
        },
        "title": _TEXT,
        "description": _TEXT,
        "datePosted": {"type": "string", "format": "date-time"},
        "validThrough": {"type": "string", "format": "date-time", "description": "expires_at"},
        "employmentType": {"type": "string", "enum": sorted(set(EMPLOYMENT_TYPES.values()))},
        "hiringOrganization": {"type": "object", "properties": {**_TYPED, "name": _TEXT}},
        "jobLocation": {
            "type": "object",
            "properties": {
                **_TYPED,
                "address": {
                    "type": "object",
                    "properties": {
                        **_TYPED,
                        "addressLocality": _TEXT,
                        "addressRegion": _TEXT,
                        "addressCountry": _TEXT,
                    },
                },
            },
        },
        "jobLocationType": {"type": "string", "enum": ["TELECOMMUTE"]},
        "applicantLocationRequirements": {
            "type": "object",
            "properties": {**_TYPED, "name": {**_TEXT, "description": "ISO 3166-1 alpha-2"}},
        },
        "baseSalary": {
            "type": "object",
            "properties": {
                **_TYPED,
                "currency": _TEXT,
                "value": {
                    "type": "object",
                    "properties": {
                        **_TYPED,
                        "minValue": _NUMBER,
                        "maxValue": _NUMBER,
                        "unitText": {"type": "string", "enum": list(SALARY_UNITS.values())},
                    },
                },
            },
        },
        "skills": {"type": "array", "items": _TEXT},
        "applicationContact": {"type": "object", "properties": {**_TYPED, "email": _TEXT}},
    },
    "required": [
        "@context",
        "@type",
        "identifier",
        "title",
        "description",
        "datePosted",
        "employmentType",
        "hiringOrganization",
    ],
}

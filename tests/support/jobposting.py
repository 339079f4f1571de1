"""A check of a JobPosting's JSON-LD against Google's structured-data guidelines for job
postings: its required properties (title, description, datePosted, hiringOrganization, and
jobLocation or a TELECOMMUTE jobLocationType with applicantLocationRequirements) and its
recommended ones (validThrough, employmentType, baseSalary, identifier), each of the type
and shape the guidelines give. Independent of the service's mapping, so it can judge it."""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeGuard

EMPLOYMENT_TYPES = {
    "FULL_TIME",
    "PART_TIME",
    "CONTRACTOR",
    "TEMPORARY",
    "INTERN",
    "VOLUNTEER",
    "PER_DIEM",
    "OTHER",
}
SALARY_UNITS = {"HOUR", "DAY", "WEEK", "MONTH", "YEAR"}
REQUIRED = ("title", "description", "datePosted", "hiringOrganization", "jobLocation")
RECOMMENDED = ("validThrough", "employmentType", "baseSalary", "identifier")


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _instant(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0


def _typed(node: Any, type_: str) -> TypeGuard[dict[str, Any]]:
    return isinstance(node, dict) and node.get("@type") == type_


def _job_location(document: dict[str, Any]) -> str | None:
    """What is wrong with where the job is, or None."""
    if document.get("jobLocationType") == "TELECOMMUTE":
        requirement = document.get("applicantLocationRequirements")
        kinds = ("Country", "State", "AdministrativeArea")
        if not (
            isinstance(requirement, dict)
            and requirement.get("@type") in kinds
            and _text(requirement.get("name"))
        ):
            return "a TELECOMMUTE job needs applicantLocationRequirements (Country, with a name)"
        return None
    place = document.get("jobLocation")
    if not _typed(place, "Place"):
        return "jobLocation must be a Place, or jobLocationType TELECOMMUTE"
    address = place.get("address")
    if not _typed(address, "PostalAddress"):
        return "jobLocation.address must be a PostalAddress"
    if not _text(address.get("addressCountry")):
        return "jobLocation.address needs addressCountry"
    if not (_text(address.get("addressLocality")) or _text(address.get("addressRegion"))):
        return "jobLocation.address needs addressLocality or addressRegion"
    return None


def _base_salary(salary: Any) -> str | None:
    if not _typed(salary, "MonetaryAmount"):
        return "baseSalary must be a MonetaryAmount"
    currency = salary.get("currency")
    if not (isinstance(currency, str) and len(currency) == 3 and currency.isupper()):
        return "baseSalary.currency must be an ISO 4217 code"
    value = salary.get("value")
    if not _typed(value, "QuantitativeValue"):
        return "baseSalary.value must be a QuantitativeValue"
    if value.get("unitText") not in SALARY_UNITS:
        return f"baseSalary.value.unitText must be one of {sorted(SALARY_UNITS)}"
    if "value" in value:
        return None if _number(value["value"]) else "baseSalary.value.value must be a number"
    low, high = value.get("minValue"), value.get("maxValue")
    if not (_number(low) and _number(high)):
        return "baseSalary.value needs value, or minValue and maxValue"
    return None if low <= high else "baseSalary.value.minValue is above maxValue"


def required_findings(document: dict[str, Any]) -> dict[str, str]:
    """Required properties missing or malformed, by property."""
    found: dict[str, str] = {}
    if document.get("@context") not in {"https://schema.org", "http://schema.org"}:
        found["@context"] = "must be schema.org"
    if document.get("@type") != "JobPosting":
        found["@type"] = "must be JobPosting"
    for name in ("title", "description"):
        if not _text(document.get(name)):
            found[name] = "must be non-empty text"
    if _instant(document.get("datePosted")) is None:
        found["datePosted"] = "must be an ISO 8601 date-time with its offset"
    organization = document.get("hiringOrganization")
    if not (_typed(organization, "Organization") and _text(organization.get("name"))):
        found["hiringOrganization"] = "must be an Organization with a name"
    location = _job_location(document)
    if location is not None:
        found["jobLocation"] = location
    return found


def recommended_findings(document: dict[str, Any]) -> dict[str, str]:
    """Recommended properties missing or malformed, by property."""
    found: dict[str, str] = {}
    posted, until = _instant(document.get("datePosted")), _instant(document.get("validThrough"))
    if until is None:
        found["validThrough"] = "must be an ISO 8601 date-time with its offset"
    elif posted is not None and until <= posted:
        found["validThrough"] = "must be after datePosted"
    kinds = document.get("employmentType")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    if not kinds or not set(kinds) <= EMPLOYMENT_TYPES:
        found["employmentType"] = f"must be among {sorted(EMPLOYMENT_TYPES)}"
    salary = _base_salary(document.get("baseSalary"))
    if salary is not None:
        found["baseSalary"] = salary
    identifier = document.get("identifier")
    if not (
        _typed(identifier, "PropertyValue")
        and _text(identifier.get("name"))
        and _text(identifier.get("value"))
    ):
        found["identifier"] = "must be a PropertyValue with a name and a value"
    return found

"""Synthetic but realistic data for the benchmarks, reproducible from a seed.

Postings are built with the postings service's own domain model (`Posting.publish`) and stored
in the service's own document shape (`store._stored_fields`: `search_tokens`, `city_key`), so
the search benchmark reads exactly what the service would have written. Application events are
built with the shared pydantic models, `EventType.new` and `serialize`, as the applications
service publishes them.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId

from hirestream.postings.domain import Posting, PostingDraft
from hirestream.postings.store import _stored_fields
from hirestream.shared.events.applications import (
    APPLICATION_SUBMITTED,
    ApplicationStatus,
    ApplicationSubmitted,
    Candidate,
    Match,
)
from hirestream.shared.events.envelope import serialize
from hirestream.shared.events.postings import PostingStatus

# (city, region, country): a spread of sizes, so some city filters match many postings and
# some few.
CITIES = [
    ("San Francisco", "CA", "US"),
    ("New York", "NY", "US"),
    ("Seattle", "WA", "US"),
    ("Chicago", "IL", "US"),
    ("Austin", "TX", "US"),
    ("Boston", "MA", "US"),
    ("Denver", "CO", "US"),
    ("Atlanta", "GA", "US"),
    ("Toronto", "ON", "CA"),
    ("Vancouver", "BC", "CA"),
    ("London", None, "GB"),
    ("Manchester", None, "GB"),
    ("Berlin", None, "DE"),
    ("Munich", None, "DE"),
    ("Hamburg", None, "DE"),
    ("Paris", None, "FR"),
    ("Lyon", None, "FR"),
    ("Amsterdam", None, "NL"),
    ("Rotterdam", None, "NL"),
    ("Dublin", None, "IE"),
    ("Madrid", None, "ES"),
    ("Barcelona", None, "ES"),
    ("Lisbon", None, "PT"),
    ("Stockholm", None, "SE"),
    ("Warsaw", None, "PL"),
    ("Zurich", None, "CH"),
    ("Bangalore", "KA", "IN"),
    ("Sydney", "NSW", "AU"),
    ("Singapore", None, "SG"),
    ("Tokyo", None, "JP"),
]
# City weights: a few big hubs, a long tail.
CITY_WEIGHTS = [
    12, 10, 8, 6, 5, 5, 3, 3, 4, 3, 9, 2, 6, 3, 2, 5, 1, 4, 1, 3, 2, 2, 1, 2, 2, 1, 4, 2, 2, 2,
]  # fmt: skip
CURRENCY = {
    "US": "USD", "CA": "CAD", "GB": "GBP", "DE": "EUR", "FR": "EUR", "NL": "EUR", "IE": "EUR",
    "ES": "EUR", "PT": "EUR", "SE": "SEK", "PL": "PLN", "CH": "CHF", "IN": "INR", "AU": "AUD",
    "SG": "SGD", "JP": "JPY",
}  # fmt: skip

SKILLS = [
    "python", "java", "go", "rust", "typescript", "javascript", "kotlin", "scala", "c++", "c#",
    "ruby", "php", "swift", "sql", "postgresql", "mongodb", "redis", "kafka", "rabbitmq",
    "kubernetes", "docker", "terraform", "aws", "gcp", "azure", "linux", "react", "vue",
    "angular", "node.js", "django", "fastapi", "spring", "graphql", "grpc", "spark", "airflow",
    "pandas", "pytorch", "tensorflow", "machine learning", "data engineering", "elasticsearch",
    "prometheus", "grafana", "ci/cd", "security", "networking", "figma", "product management",
]  # fmt: skip
# Popular skills first: python and sql appear in many postings, figma in few.
SKILL_WEIGHTS = [max(1, 30 - index) for index in range(len(SKILLS))]

ROLES = [
    "Backend Engineer", "Frontend Engineer", "Full Stack Developer", "Data Engineer",
    "Data Scientist", "Machine Learning Engineer", "Site Reliability Engineer",
    "Platform Engineer", "DevOps Engineer", "Security Engineer", "Mobile Developer",
    "Engineering Manager", "Product Manager", "QA Engineer", "Solutions Architect",
]  # fmt: skip
LEVEL_WORDS = {
    "junior": "Junior",
    "mid": "",
    "senior": "Senior",
    "staff": "Staff",
    "principal": "Principal",
}
COMPANY_WORDS = [
    "Acme", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay", "Stark", "Wayne", "Tyrell",
    "Cyberdyne", "Soylent", "Wonka", "Gringotts", "Oscorp", "Aperture", "Massive", "Dynamic",
    "Blue", "Northwind", "Contoso",
]  # fmt: skip
COMPANY_SUFFIX = ["Labs", "Systems", "Corp", "Technologies", "Health", "Bank", "Logistics", "AI"]
SENTENCES = [
    "You will design and operate services that handle millions of requests a day.",
    "Our stack is event driven, with Kafka between services and MongoDB behind them.",
    "We value code review, pairing, and small changes shipped often.",
    "You will mentor engineers and shape our technical roadmap.",
    "The team owns its services in production, on call included, with a humane rotation.",
    "Experience with distributed systems and observability is a strong plus.",
    "We build data pipelines that feed analytics and machine learning models.",
    "You will work closely with product, design and customer support.",
    "We offer flexible hours, a learning budget and generous parental leave.",
    "Help us migrate a monolith to well-bounded services without stopping the business.",
    "Performance, reliability and security are part of every feature we ship.",
    "You will build internal tools that make hundreds of engineers more productive.",
]  # fmt: skip
WORKPLACE = (["onsite", "hybrid", "remote"], [3, 5, 2])
EMPLOYMENT = (["full_time", "part_time", "contract", "internship"], [80, 5, 12, 3])
SENIORITY = (["junior", "mid", "senior", "staff", "principal"], [15, 35, 35, 10, 5])
SALARY_BASE = {
    "junior": 60_000, "mid": 95_000, "senior": 135_000, "staff": 175_000, "principal": 210_000,
}  # fmt: skip


def _pick(rng: random.Random, choices: tuple[list[str], list[int]]) -> str:
    return rng.choices(choices[0], weights=choices[1])[0]


def posting_draft(rng: random.Random) -> PostingDraft:
    city, region, country = rng.choices(CITIES, weights=CITY_WEIGHTS)[0]
    seniority = _pick(rng, SENIORITY)
    role = rng.choice(ROLES)
    title = f"{LEVEL_WORDS[seniority]} {role}".strip()
    company = f"{rng.choice(COMPANY_WORDS)} {rng.choice(COMPANY_SUFFIX)}"
    skills = list(dict.fromkeys(rng.choices(SKILLS, weights=SKILL_WEIGHTS, k=rng.randint(3, 7))))
    description = " ".join(rng.sample(SENTENCES, k=rng.randint(3, 6)))
    low = int(SALARY_BASE[seniority] * rng.uniform(0.85, 1.15)) // 1000 * 1000
    high = low + rng.randint(10, 40) * 1000
    return PostingDraft.model_validate(
        {
            "title": title,
            "company": company,
            "description": f"{title} at {company}. {description}",
            "location": {"city": city, "region": region, "country": country},
            "workplace": _pick(rng, WORKPLACE),
            "employment_type": _pick(rng, EMPLOYMENT),
            "seniority": seniority,
            "skills": skills,
            "salary": {
                "min": low * 100,
                "max": high * 100,
                "currency": CURRENCY[country],
                "period": "year",
            },
            "contact_email": f"jobs@{company.split()[0].lower()}.example",
        }
    )


def posting_document(rng: random.Random, *, now: datetime, orgs: int = 500) -> dict[str, Any]:
    """One stored posting as `PostingStore.insert` writes it, its outbox already published
    (as the relay leaves it), created some time in the last 90 days; 10% are closed."""
    created = now - timedelta(seconds=rng.uniform(0, 90 * 24 * 3600))
    object_id = ObjectId.from_datetime(created)
    # from_datetime zeroes the rest of the id; give it a unique tail.
    object_id = ObjectId(object_id.binary[:4] + uuid.uuid4().bytes[:8])
    posting, _ = Posting.publish(
        posting_draft(rng),
        posting_id=str(object_id),
        org=f"org-{rng.randrange(orgs):04d}",
        now=created,
    )
    if rng.random() < 0.1:
        posting = posting.model_copy(
            update={"status": PostingStatus.CLOSED, "version": 2, "closed_at": created}
        )
    return {
        "_id": object_id,
        **_stored_fields(posting),
        "outbox": [],
        "outbox_due_at": None,
        "outbox_claim": None,
    }


@dataclass(frozen=True)
class SearchMix:
    """One kind of `GET /postings` query, with several parameter sets to rotate through."""

    name: str
    what: str
    params: list[dict[str, str]]


SEARCH_MIXES = [
    SearchMix("newest", "no filter: the newest open postings", [{}]),
    SearchMix(
        "q_one_word",
        "q with one common word",
        [{"q": word} for word in ("engineer", "kafka", "python", "data", "senior")],
    ),
    SearchMix(
        "q_two_words",
        "q with two words (both required)",
        [{"q": text} for text in ("senior python", "platform kubernetes", "data spark")],
    ),
    SearchMix(
        "skills",
        "skills, two required",
        [{"skills": text} for text in ("python,kafka", "java,spring", "react,typescript")],
    ),
    SearchMix(
        "city",
        "city alone",
        [{"city": city} for city in ("Chicago", "Berlin", "London", "Lisbon", "Tokyo")],
    ),
    SearchMix(
        "country_city_workplace",
        "country + city + workplace",
        [
            {"country": "US", "city": "Seattle", "workplace": "remote"},
            {"country": "DE", "city": "Berlin", "workplace": "hybrid"},
            {"country": "GB", "city": "London", "workplace": "onsite"},
        ],
    ),
    SearchMix(
        "salary_seniority",
        "min_salary + seniority (residual filters on the status index)",
        [
            {"min_salary": "15000000", "seniority": "senior"},
            {"min_salary": "20000000", "seniority": "staff"},
        ],
    ),
    SearchMix(
        "rare_combination",
        "q + skills + city + seniority matching few postings (worst case: long index scans)",
        [
            {"q": "rust", "skills": "figma", "city": "Lisbon", "seniority": "principal"},
            {"q": "security", "skills": "grpc,azure", "city": "Zurich", "seniority": "junior"},
        ],
    ),
]


def application_submitted_event(rng: random.Random, index: int, *, run: str) -> bytes:
    """One valid `application.submitted` record value, as the applications service would
    publish it: a distinct candidate and application each, spread over 200 postings and 50
    employers."""
    skills = list(dict.fromkeys(rng.choices(SKILLS, weights=SKILL_WEIGHTS, k=4)))
    posting_skills = list(dict.fromkeys(rng.choices(SKILLS, weights=SKILL_WEIGHTS, k=4)))
    matched = [skill for skill in posting_skills if skill in skills]
    data = ApplicationSubmitted(
        application_id=f"{index:024x}",
        posting_id=f"{rng.randrange(200):024x}",
        org=f"org-{rng.randrange(50):04d}",
        candidate=Candidate(
            candidate_id=f"cand-{run}-{index}",
            name=f"Candidate {index}",
            email=f"candidate.{index}@example.com",
        ),
        resume_url=f"https://cv.example.com/{run}/{index}.pdf",
        skills=skills,
        match=Match(
            score=round(len(matched) / len(posting_skills), 3),
            matched_skills=matched,
            missing_skills=[skill for skill in posting_skills if skill not in skills],
        ),
        status=ApplicationStatus.SUBMITTED,
        version=1,
        submitted_at=datetime.now(UTC),
    )
    event = APPLICATION_SUBMITTED.new(data, source="hirestream/applications")
    return serialize(event)


def application_form(index: int, *, run: str) -> dict[str, Any]:
    """The body of `POST /postings/{id}/applications`."""
    return {
        "name": f"Candidate {run} {index}",
        "email": f"candidate.{run}.{index}@example.com",
        "resume_url": f"https://cv.example.com/{run}/{index}.pdf",
        "consent": {"processing": True},
        "skills": ["python", "kafka", "mongodb"],
        "cover_letter": "I build event-driven services and would love to join your team.",
    }

"""Synthetic data, reproducible from a seed, built with the services' own models: postings with
the postings domain (`Posting.publish`) in the store's document shape (`store._fields`), and
events with the shared event models, as the applications service publishes them."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId

from hirestream.postings.domain import Posting, PostingDraft
from hirestream.postings.store import _fields
from hirestream.shared.events.applications import (
    APPLICATION_SUBMITTED,
    ApplicationStatus,
    ApplicationSubmitted,
    Candidate,
    Match,
)
from hirestream.shared.events.envelope import serialize
from hirestream.shared.events.postings import PostingStatus
from hirestream.shared.messaging.outbox import new_outbox_fields

# (city, region, country, weight): a few big hubs and a long tail, so that some city filters
# match many postings and some few.
CITIES = [
    ("San Francisco", "CA", "US", 12), ("New York", "NY", "US", 10), ("Seattle", "WA", "US", 8),
    ("Chicago", "IL", "US", 6), ("Austin", "TX", "US", 5), ("Boston", "MA", "US", 5),
    ("Denver", "CO", "US", 3), ("Atlanta", "GA", "US", 3), ("Toronto", "ON", "CA", 4),
    ("Vancouver", "BC", "CA", 3), ("London", None, "GB", 9), ("Manchester", None, "GB", 2),
    ("Berlin", None, "DE", 6), ("Munich", None, "DE", 3), ("Hamburg", None, "DE", 2),
    ("Paris", None, "FR", 5), ("Lyon", None, "FR", 1), ("Amsterdam", None, "NL", 4),
    ("Rotterdam", None, "NL", 1), ("Dublin", None, "IE", 3), ("Madrid", None, "ES", 2),
    ("Barcelona", None, "ES", 2), ("Lisbon", None, "PT", 1), ("Stockholm", None, "SE", 2),
    ("Warsaw", None, "PL", 2), ("Zurich", None, "CH", 1), ("Bangalore", "KA", "IN", 4),
    ("Sydney", "NSW", "AU", 2), ("Singapore", None, "SG", 2), ("Tokyo", None, "JP", 2),
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
SKILL_WEIGHTS = [max(1, 30 - index) for index in range(len(SKILLS))]  # python common, figma rare
ROLES = [
    "Backend Engineer", "Frontend Engineer", "Full Stack Developer", "Data Engineer",
    "Data Scientist", "Machine Learning Engineer", "Site Reliability Engineer",
    "Platform Engineer", "DevOps Engineer", "Security Engineer", "Mobile Developer",
    "Engineering Manager", "Product Manager", "QA Engineer", "Solutions Architect",
]  # fmt: skip
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
]
# (choices, weights)
WORKPLACE = (["onsite", "hybrid", "remote"], [3, 5, 2])
EMPLOYMENT = (["full_time", "part_time", "contract", "internship"], [80, 5, 12, 3])
SENIORITY = (["junior", "mid", "senior", "staff", "principal"], [15, 35, 35, 10, 5])
LEVEL = {"junior": "Junior", "mid": "", "senior": "Senior", "staff": "Staff",
         "principal": "Principal"}  # fmt: skip
SALARY_BASE = {"junior": 60_000, "mid": 95_000, "senior": 135_000, "staff": 175_000,
               "principal": 210_000}  # fmt: skip


def _pick(rng: random.Random, choices: tuple[list[str], list[int]]) -> str:
    return rng.choices(choices[0], weights=choices[1])[0]


def posting_draft(rng: random.Random) -> PostingDraft:
    city, region, country, _ = rng.choices(CITIES, weights=[c[3] for c in CITIES])[0]
    seniority = _pick(rng, SENIORITY)
    title = f"{LEVEL[seniority]} {rng.choice(ROLES)}".strip()
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
            "salary": {"min": low * 100, "max": high * 100, "currency": CURRENCY[country],
                       "period": "year"},
            "contact_email": f"jobs@{company.split()[0].lower()}.example",
        }
    )  # fmt: skip


def posting_document(rng: random.Random, *, now: datetime) -> dict[str, Any]:
    """One stored posting as `PostingStore.insert` writes it, its outbox already published,
    created in the last 90 days; 10% are closed."""
    created = now - timedelta(seconds=rng.uniform(0, 90 * 24 * 3600))
    # An id of that time (the newest-first order follows it), with a unique tail.
    object_id = ObjectId(ObjectId.from_datetime(created).binary[:4] + uuid.uuid4().bytes[:8])
    draft = posting_draft(rng)
    org = f"org-{rng.randrange(500):04d}"
    posting, _ = Posting.publish(draft, posting_id=str(object_id), org=org, now=created)
    if rng.random() < 0.1:
        posting = posting.model_copy(
            update={"status": PostingStatus.CLOSED, "version": 2, "closed_at": created}
        )
    return {"_id": object_id, **_fields(posting), **new_outbox_fields([])}


@dataclass(frozen=True)
class SearchMix:
    """One kind of `GET /postings` query, with parameter sets to rotate through."""

    name: str
    what: str
    params: list[dict[str, str]]


SEARCH_MIXES = [
    SearchMix("newest", "no filter: the newest open postings", [{}]),
    SearchMix("q_one_word", "q with one common word",
              [{"q": w} for w in ("engineer", "kafka", "python", "data", "senior")]),
    SearchMix("q_two_words", "q with two words (both required)",
              [{"q": t} for t in ("senior python", "platform kubernetes", "data spark")]),
    SearchMix("skills", "skills, two required",
              [{"skills": t} for t in ("python,kafka", "java,spring", "react,typescript")]),
    SearchMix("city", "city alone",
              [{"city": c} for c in ("Chicago", "Berlin", "London", "Lisbon", "Tokyo")]),
    SearchMix("country_city_workplace", "country + city + workplace", [
        {"country": "US", "city": "Seattle", "workplace": "remote"},
        {"country": "DE", "city": "Berlin", "workplace": "hybrid"},
        {"country": "GB", "city": "London", "workplace": "onsite"},
    ]),
    SearchMix("salary_seniority", "min_salary + seniority (residual filters on the status index)", [
        {"min_salary": "15000000", "seniority": "senior"},
        {"min_salary": "20000000", "seniority": "staff"},
    ]),
    SearchMix("rare_combination", "q + skills + city + seniority matching few postings", [
        {"q": "rust", "skills": "figma", "city": "Lisbon", "seniority": "principal"},
        {"q": "security", "skills": "grpc,azure", "city": "Zurich", "seniority": "junior"},
    ]),
]  # fmt: skip


def application_submitted_event(rng: random.Random, index: int, *, run: str) -> bytes:
    """One valid `application.submitted` record value: a distinct candidate and application
    each, over 200 postings and 50 employers."""
    skills = list(dict.fromkeys(rng.choices(SKILLS, weights=SKILL_WEIGHTS, k=4)))
    wanted = list(dict.fromkeys(rng.choices(SKILLS, weights=SKILL_WEIGHTS, k=4)))
    matched = [skill for skill in wanted if skill in skills]
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
            score=round(len(matched) / len(wanted), 3),
            matched_skills=matched,
            missing_skills=[skill for skill in wanted if skill not in skills],
        ),
        status=ApplicationStatus.SUBMITTED,
        version=1,
        submitted_at=datetime.now(UTC),
    )
    return serialize(APPLICATION_SUBMITTED.new(data, source="hirestream/applications"))


def candidate_email(candidate: str) -> str:
    """The address a candidate's token verifies, and the one their applications give."""
    return f"{candidate}@example.com"


def application_form(index: int, *, run: str, candidate: str | None = None) -> dict[str, Any]:
    """The body of `POST /postings/{id}/applications` (by `candidate`, if given)."""
    email = candidate_email(candidate or f"candidate.{run}.{index}")
    return {
        "name": f"Candidate {run} {index}",
        "email": email,
        "resume_url": f"https://cv.example.com/{run}/{index}.pdf",
        "consent": {"processing": True},
        "skills": ["python", "kafka", "mongodb"],
        "cover_letter": "I build event-driven services and would love to join your team.",
    }

"""`python -m hirestream.postings.demo`: publish a handful of realistic postings.

Talks to a running postings service over HTTP like any client, with an employer token minted
from `JWT_SECRET` (`./dev.sh demo` does all of this against the local system).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import httpx

from hirestream.shared.devtoken import mint_token
from hirestream.shared.identity import Role

DESCRIPTION = (
    "Join the platform team that runs our event-driven hiring marketplace. You will design "
    "and operate Python services on Kafka and MongoDB, own them in production on Kubernetes, "
    "and mentor engineers across the organisation."
)

CITIES = [
    ("San Francisco", "CA", ["python", "kafka", "mongodb", "kubernetes"], 170_000, 200_000),
    ("New York", "NY", ["python", "postgresql", "docker", "kafka"], 160_000, 195_000),
    ("Seattle", "WA", ["go", "kafka", "kubernetes", "docker"], 150_000, 185_000),
    ("Los Angeles", "CA", ["java", "kafka", "postgresql", "docker"], 135_000, 170_000),
    ("Chicago", "IL", ["python", "mongodb", "docker", "go"], 120_000, 160_000),
]


def demo_postings() -> list[dict[str, Any]]:
    return [
        {
            "title": "Senior Backend Developer",
            "company": "Hirestream Demo Inc.",
            "description": DESCRIPTION,
            "location": {"city": city, "region": region, "country": "US"},
            "workplace": "hybrid" if index % 2 else "onsite",
            "employment_type": "full_time",
            "seniority": "senior",
            "skills": skills,
            "salary": {
                "min": low * 100,  # minor units: cents
                "max": high * 100,
                "currency": "USD",
                "period": "year",
            },
            "contact_email": "talent@demo.hirestream.dev",
        }
        for index, (city, region, skills, low, high) in enumerate(CITIES)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Publish demo postings")
    parser.add_argument("--url", default="http://127.0.0.1:8001", help="postings service")
    parser.add_argument("--org", default="demo-inc", help="the employer's org id")
    args = parser.parse_args(argv)
    secret = os.environ.get("JWT_SECRET")
    if not secret:
        print("error: JWT_SECRET is not set", file=sys.stderr)
        return 2
    token = mint_token(secret, role=Role.EMPLOYER, sub="demo-recruiter", org=args.org)
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=args.url, headers=headers, timeout=10) as client:
        for posting in demo_postings():
            response = client.post("/postings", json=posting)
            if response.status_code != 201:
                print(f"error: {response.status_code} {response.text}", file=sys.stderr)
                return 1
            created = response.json()
            print(f"{created['posting_id']}  {created['title']}, {created['location']['city']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

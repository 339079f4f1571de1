"""`GET /postings/{id}` as a schema.org JobPosting (`Accept: application/ld+json`) on the real
service: the media type, Google's required and recommended properties, an office posting and a
remote one, 410 once the posting is closed, and JSON as before otherwise. The
mapping's details: tests/unit/postings/test_jobposting.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import httpx
import pytest

from hirestream.shared.events.types import utc_now
from tests.conftest import bearer, unique_db
from tests.support.http import assert_problem
from tests.support.jobposting import recommended_findings, required_findings
from tests.support.postings import close, create, employer, new_org, running_postings

pytestmark = pytest.mark.integration

JSON_LD = "application/ld+json"
AS_JOB_POSTING = {**bearer("candidate"), "Accept": JSON_LD}


@pytest.fixture(scope="module")
async def postings(base_env: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    async for client in running_postings(base_env, unique_db("postings")):
        yield client


async def test_an_office_posting_as_a_job_posting(postings: httpx.AsyncClient) -> None:
    end = (utc_now() + timedelta(days=20)).isoformat()
    posting = await create(postings, new_org(), workplace="onsite", expires_at=end)

    response = await postings.get(f"/postings/{posting['posting_id']}", headers=AS_JOB_POSTING)

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == JSON_LD
    assert response.headers["etag"] == '"1"'
    assert response.headers["vary"] == "Accept"
    document = response.json()
    assert required_findings(document) == {}
    assert recommended_findings(document) == {}
    assert (document["@context"], document["@type"]) == ("https://schema.org", "JobPosting")
    assert document["identifier"]["value"] == posting["posting_id"]
    assert document["datePosted"] == posting["created_at"]
    assert datetime.fromisoformat(document["validThrough"]) == datetime.fromisoformat(end)
    assert document["hiringOrganization"] == {"@type": "Organization", "name": "Acme Corp"}
    assert document["jobLocation"]["address"]["addressLocality"] == "Seattle"
    assert document["baseSalary"]["value"] == {
        "@type": "QuantitativeValue",
        "minValue": 160000,
        "maxValue": 190000,
        "unitText": "YEAR",
    }


async def test_a_remote_posting_as_a_job_posting(postings: httpx.AsyncClient) -> None:
    posting = await create(
        postings,
        new_org(),
        workplace="remote",
        employment_type="contract",
        location={"city": "Berlin", "country": "DE"},
        salary={"min": 6_000, "max": 8_550, "currency": "EUR", "period": "hour"},
    )

    response = await postings.get(f"/postings/{posting['posting_id']}", headers=AS_JOB_POSTING)

    assert response.status_code == 200, response.text
    document = response.json()
    assert required_findings(document) == {}
    assert recommended_findings(document) == {}
    assert document["jobLocationType"] == "TELECOMMUTE"
    assert document["applicantLocationRequirements"] == {"@type": "Country", "name": "DE"}
    assert document["employmentType"] == "CONTRACTOR"
    assert document["baseSalary"]["currency"] == "EUR"
    assert (
        document["baseSalary"]["value"]["minValue"],
        document["baseSalary"]["value"]["maxValue"],
    ) == (
        60,
        85.5,
    )


async def test_a_closed_posting_is_gone_as_a_job_posting_but_readable_as_json(
    postings: httpx.AsyncClient,
) -> None:
    org = new_org()
    posting = await create(postings, org)
    path = f"/postings/{posting['posting_id']}"
    assert (await close(postings, posting["posting_id"], employer(org))).status_code == 200

    gone = await postings.get(path, headers=AS_JOB_POSTING)

    assert "closed or past its end" in assert_problem(gone, 410)["detail"]
    as_json = await postings.get(
        path, headers={**bearer("candidate"), "Accept": "application/json"}
    )
    assert as_json.status_code == 200, as_json.text
    assert as_json.headers["content-type"] == "application/json"
    assert as_json.json()["status"] == "closed"


async def test_json_stays_the_default(postings: httpx.AsyncClient) -> None:
    posting = await create(postings, new_org())

    response = await postings.get(f"/postings/{posting['posting_id']}", headers=bearer("candidate"))

    assert response.headers["content-type"] == "application/json"
    assert response.headers["vary"] == "Accept"
    assert response.json() == posting


async def test_an_unknown_posting_is_404_in_either_representation(
    postings: httpx.AsyncClient,
) -> None:
    assert_problem(
        await postings.get("/postings/6650f1c2e4b0a1b2c3d4ffff", headers=AS_JOB_POSTING), 404
    )

"""What a candidate sees of their own application: the history of its moves, but not the
employer's reasons or which recruiter made each move (finding 6 of the outside probe).
On the real broker and database: the posting reaches the service as an event."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from tests.conftest import unique_db
from tests.support.applications_integration import (
    Board,
    applied_to_new_posting,
    as_candidate,
    as_employer,
    fetch,
    listed,
    move,
    moved,
    running_applications,
)
from tests.support.servers import Servers

pytestmark = pytest.mark.integration

REASON = "Not enough Kafka in production; internal note."
RECRUITER = "user-recruiter-zed"


@pytest.fixture(scope="module")
def database() -> str:
    return unique_db("applications")


@pytest.fixture(scope="module")
async def applications(base_env: dict[str, str], database: str) -> AsyncIterator[httpx.AsyncClient]:
    async for client in running_applications(base_env, database):
        yield client


async def test_a_candidate_sees_the_employers_moves_without_reasons_or_recruiters(
    applications: httpx.AsyncClient,
    servers: Servers,
    mongo: AsyncMongoClient[dict[str, Any]],
    database: str,
) -> None:
    application = await applied_to_new_posting(applications, Board(servers, mongo, database))
    employer = as_employer(application.org, sub=RECRUITER)
    await moved(applications, application.application_id, "screening", employer)
    rejected = await move(
        applications, application.application_id, "rejected", employer, reason=REASON
    )
    assert rejected.status_code == 200, rejected.text

    as_employer_sees = await fetch(applications, application.application_id)
    assert [(h["changed_by"], h["reason"]) for h in as_employer_sees["history"]] == [
        (RECRUITER, None),
        (RECRUITER, REASON),
    ]

    candidate = as_candidate(application.candidate)
    own = await applications.get(f"/applications/{application.application_id}", headers=candidate)
    assert own.status_code == 200
    assert [
        (h["from_status"], h["to_status"], h["changed_by"], h["reason"])
        for h in own.json()["history"]
    ] == [("submitted", "screening", None, None), ("screening", "rejected", None, None)]
    assert REASON not in own.text
    assert RECRUITER not in own.text

    listed_own = await applications.get("/applications", headers=candidate)
    assert REASON not in listed_own.text
    assert RECRUITER not in listed_own.text
    assert application.application_id in await listed(applications, candidate)

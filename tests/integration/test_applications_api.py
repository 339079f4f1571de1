"""The applications API on the real broker and database: what the rules of the use cases
(tests/unit/applications) cannot show. The routes answer with their statuses, headers and
problem documents; concurrent requests meet the unique index; an Idempotency-Key survives
concurrent retries; the store filters, sorts and pages on the database; events reach Kafka once.
Postings reach the service only as `posting.*` events on Kafka, as in production; each test
uses postings, orgs and candidates of its own.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from bson import ObjectId
from pymongo import AsyncMongoClient

from tests.conftest import candidate_email, unique_db
from tests.support.applications import application_body
from tests.support.applications_integration import (
    Applied,
    Board,
    applied,
    applied_to_new_posting,
    apply,
    as_admin,
    as_candidate,
    as_employer,
    fetch,
    listed,
    move,
    moved,
    new_candidate,
    new_org,
    running_applications,
    settled_submissions,
    status_changes_until,
)
from tests.support.factories import new_posting_id
from tests.support.http import assert_problem, problem_fields
from tests.support.servers import Servers

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def applications_db() -> str:
    return unique_db("applications")


@pytest.fixture(scope="module")
async def applications(
    base_env: dict[str, str], applications_db: str
) -> AsyncIterator[httpx.AsyncClient]:
    async for client in running_applications(base_env, applications_db):
        yield client


@pytest.fixture(scope="module")
def board(
    applications: httpx.AsyncClient,  # the service, and so its consumers, must be running
    servers: Servers,
    mongo: AsyncMongoClient[dict[str, Any]],
    applications_db: str,
) -> Board:
    return Board(servers, mongo, applications_db)


@pytest.fixture
def org() -> str:
    return new_org()


@pytest.fixture
def candidate() -> str:
    return new_candidate()


@pytest.fixture(scope="module")
async def one_application(applications: httpx.AsyncClient, board: Board) -> Applied:
    """One application the tests that only read, or are refused, look at; never changed."""
    return await applied_to_new_posting(applications, board)


@pytest.fixture
async def submitted(applications: httpx.AsyncClient, board: Board) -> Applied:
    """A fresh application in `submitted`, for a test that moves it."""
    return await applied_to_new_posting(applications, board)


# --- apply ------------------------------------------------------------------------------------


async def test_applying_answers_201_with_location_and_the_match(
    applications: httpx.AsyncClient, board: Board, org: str, candidate: str
) -> None:
    posting_id = await board.open(org)

    response = await apply(applications, posting_id, candidate)

    assert response.status_code == 201, response.text
    body = response.json()
    application_id = body["application_id"]
    assert ObjectId.is_valid(application_id)
    assert response.headers["location"] == f"/applications/{application_id}"
    assert "idempotent-replayed" not in response.headers
    assert body["status"] == "submitted"
    assert body["version"] == 1
    assert body["posting_id"] == posting_id
    assert body["org"] == org
    assert body["skills"] == ["python", "kafka", "postgresql"]
    assert body["match"] == {
        "score": 0.5,
        "matched_skills": ["python", "kafka"],
        "missing_skills": ["mongodb", "kubernetes"],
    }


async def test_an_application_can_be_read_back_as_created(
    applications: httpx.AsyncClient, board: Board, org: str, candidate: str
) -> None:
    posting_id = await board.open(org)
    created = await applied(applications, posting_id, candidate)

    response = await applications.get(
        f"/applications/{created['application_id']}", headers=as_candidate(candidate)
    )

    assert response.status_code == 200, response.text
    assert response.json() == created


async def test_applying_publishes_application_submitted_once(
    applications: httpx.AsyncClient, servers: Servers, board: Board, org: str, candidate: str
) -> None:
    posting_id = await board.open(org)
    application_id = (await applied(applications, posting_id, candidate))["application_id"]

    records = await settled_submissions(servers, posting_id, expected=1)

    assert len(records) == 1
    record = records[0]
    assert record.key == application_id.encode()
    event = record.json()
    assert event["subject"] == application_id
    data = event["data"]
    assert data["application_id"] == application_id
    assert data["candidate"] == {
        "candidate_id": candidate,
        "name": "Maya Okafor",
        "email": candidate_email(candidate),
    }
    assert data["org"] == org
    assert data["match"] == {
        "score": 0.5,
        "matched_skills": ["python", "kafka"],
        "missing_skills": ["mongodb", "kubernetes"],
    }
    assert data["status"] == "submitted"
    assert data["version"] == 1


async def test_applying_to_an_unknown_posting_is_404(
    applications: httpx.AsyncClient, candidate: str
) -> None:
    response = await apply(applications, new_posting_id(), candidate)

    assert_problem(response, 404)


async def test_applying_to_a_posting_closed_on_kafka_is_409(
    applications: httpx.AsyncClient, board: Board, org: str, candidate: str
) -> None:
    posting_id = await board.open(org)
    await board.close(posting_id, org)

    response = await apply(applications, posting_id, candidate)

    problem = assert_problem(response, 409)
    assert "closed" in problem["detail"]
    assert await listed(applications, as_candidate(candidate)) == []


@pytest.mark.parametrize(
    "caller",
    [
        pytest.param(lambda org: as_employer(org), id="employer"),
        pytest.param(lambda org: as_admin(), id="admin"),
    ],
)
async def test_only_a_candidate_may_apply(
    applications: httpx.AsyncClient,
    board: Board,
    org: str,
    caller: Callable[[str], dict[str, str]],
) -> None:
    posting_id = await board.open(org)

    response = await applications.post(
        f"/postings/{posting_id}/applications", json=application_body(), headers=caller(org)
    )

    assert_problem(response, 403)
    assert await listed(applications, as_admin(), posting_id=posting_id) == []


@pytest.mark.parametrize(
    ("changes", "fields"),
    [
        pytest.param({"github": "https://github.com/maya"}, {"github"}, id="unknown-field"),
        pytest.param({"skills": "python, kafka"}, {"skills"}, id="skills-not-a-list"),
        pytest.param(
            {"email": "nope", "resume_url": "nope"}, {"email", "resume_url"}, id="two-fields"
        ),
    ],
)
async def test_an_invalid_application_is_422_naming_the_fields(
    applications: httpx.AsyncClient, candidate: str, changes: dict[str, Any], fields: set[str]
) -> None:
    # The form is refused before the posting is looked for: any posting id will do.
    response = await apply(applications, new_posting_id(), candidate, **changes)

    assert problem_fields(response) == fields
    assert await listed(applications, as_candidate(candidate)) == []


async def test_an_application_without_its_required_fields_is_422_naming_them(
    applications: httpx.AsyncClient, candidate: str
) -> None:
    response = await applications.post(
        f"/postings/{new_posting_id()}/applications",
        json={"skills": ["python"]},
        headers=as_candidate(candidate),
    )

    assert problem_fields(response) == {"name", "email", "resume_url", "consent"}


async def test_20_concurrent_identical_applications_make_exactly_one(
    applications: httpx.AsyncClient, servers: Servers, board: Board, org: str, candidate: str
) -> None:
    posting_id = await board.open(org)

    responses = await asyncio.gather(
        *(apply(applications, posting_id, candidate) for _ in range(20))
    )

    statuses = sorted(response.status_code for response in responses)
    assert statuses == [201] + [409] * 19, [r.text for r in responses if r.status_code >= 500]
    winner = next(r.json() for r in responses if r.status_code == 201)
    for response in responses:
        if response.status_code == 409:
            problem = assert_problem(response, 409)
            assert problem["application_id"] == winner["application_id"]
            assert winner["application_id"] in problem["detail"]
    records = await settled_submissions(servers, posting_id, expected=1)
    assert [r.key for r in records] == [winner["application_id"].encode()]


# --- Idempotency-Key --------------------------------------------------------------------------


async def test_a_retry_with_the_same_idempotency_key_replays_the_first_response(
    applications: httpx.AsyncClient, servers: Servers, board: Board, org: str, candidate: str
) -> None:
    posting_id = await board.open(org)
    key = f"apply-{uuid.uuid4()}"
    first = await apply(applications, posting_id, candidate, key=key)
    assert first.status_code == 201, first.text

    retry = await apply(applications, posting_id, candidate, key=key)

    assert retry.status_code == 201, retry.text
    assert retry.content == first.content
    assert retry.headers["location"] == first.headers["location"]
    assert retry.headers["idempotent-replayed"] == "true"
    records = await settled_submissions(servers, posting_id, expected=1)
    assert [r.key for r in records] == [first.json()["application_id"].encode()]


async def test_concurrent_requests_with_one_idempotency_key_all_get_the_same_application(
    applications: httpx.AsyncClient, board: Board, org: str, candidate: str
) -> None:
    posting_id = await board.open(org)
    key = f"apply-{uuid.uuid4()}"

    responses = await asyncio.gather(
        *(apply(applications, posting_id, candidate, key=key) for _ in range(10))
    )

    assert [r.status_code for r in responses] == [201] * 10, [r.text for r in responses]
    assert len({r.json()["application_id"] for r in responses}) == 1
    assert len({r.content for r in responses}) == 1


async def test_an_idempotency_key_reused_for_another_body_is_422_naming_the_header(
    applications: httpx.AsyncClient, board: Board, org: str, candidate: str
) -> None:
    posting_id = await board.open(org)
    key = f"apply-{uuid.uuid4()}"
    first = await apply(applications, posting_id, candidate, key=key)
    assert first.status_code == 201, first.text

    other = await apply(
        applications, posting_id, candidate, key=key, cover_letter="A different letter."
    )

    assert "Idempotency-Key" in assert_problem(other, 422)["detail"]
    assert problem_fields(other) == {"Idempotency-Key"}
    assert (await fetch(applications, first.json()["application_id"]))["cover_letter"] == (
        application_body()["cover_letter"]
    )


# --- read one ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "caller",
    [
        pytest.param(lambda a: as_candidate(a.candidate), id="the-candidate"),
        pytest.param(lambda a: as_employer(a.org), id="the-postings-employer"),
        pytest.param(lambda a: as_admin(), id="admin"),
    ],
)
async def test_an_application_is_visible_to_its_parties(
    applications: httpx.AsyncClient,
    one_application: Applied,
    caller: Callable[[Applied], dict[str, str]],
) -> None:
    response = await applications.get(
        f"/applications/{one_application.application_id}", headers=caller(one_application)
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["application_id"] == one_application.application_id
    assert body["candidate"]["candidate_id"] == one_application.candidate
    assert body["org"] == one_application.org


@pytest.mark.parametrize(
    "caller",
    [
        pytest.param(lambda: as_candidate(new_candidate()), id="another-candidate"),
        pytest.param(lambda: as_employer(new_org()), id="an-employer-of-another-org"),
    ],
)
async def test_an_application_is_not_found_for_anyone_else(
    applications: httpx.AsyncClient,
    one_application: Applied,
    caller: Callable[[], dict[str, str]],
) -> None:
    response = await applications.get(
        f"/applications/{one_application.application_id}", headers=caller()
    )

    assert_problem(response, 404)


@pytest.mark.parametrize("application_id", [str(ObjectId()), "not-an-id", "0" * 25])
async def test_an_unknown_application_is_404(
    applications: httpx.AsyncClient, application_id: str
) -> None:
    response = await applications.get(f"/applications/{application_id}", headers=as_admin())

    assert_problem(response, 404)


# --- list -------------------------------------------------------------------------------------


async def test_a_candidate_lists_only_their_own_applications_newest_first(
    applications: httpx.AsyncClient, board: Board, org: str, candidate: str
) -> None:
    first_posting, second_posting = [await board.open(org) for _ in range(2)]
    older = await applied(applications, first_posting, candidate)
    await applied(applications, first_posting, new_candidate())
    newer = await applied(applications, second_posting, candidate)

    assert await listed(applications, as_candidate(candidate)) == [
        newer["application_id"],
        older["application_id"],
    ]


async def test_an_employer_lists_their_orgs_applications_by_posting_and_status(
    applications: httpx.AsyncClient, board: Board, org: str
) -> None:
    backend, frontend = await board.open(org), await board.open(org, skills=["react"])
    await applied(applications, await board.open(new_org()), new_candidate())  # not theirs
    screened, waiting = [await applied(applications, backend, new_candidate()) for _ in range(2)]
    other = await applied(applications, frontend, new_candidate())
    employer = as_employer(org)
    await moved(applications, screened["application_id"], "screening", employer)

    newest_first = [a["application_id"] for a in (other, waiting, screened)]
    assert await listed(applications, employer) == newest_first
    assert await listed(applications, employer, posting_id=backend) == newest_first[1:]
    assert await listed(applications, employer, status="screening") == [screened["application_id"]]
    assert await listed(applications, employer, status="submitted") == newest_first[:2]
    assert await listed(applications, employer, status="hired") == []


async def test_limit_pages_through_every_application_once(
    applications: httpx.AsyncClient, board: Board, org: str
) -> None:
    posting_id = await board.open(org)
    created = [await applied(applications, posting_id, new_candidate()) for _ in range(5)]

    pages: list[list[str]] = []
    params: dict[str, Any] = {"limit": 2}
    while True:
        response = await applications.get("/applications", params=params, headers=as_employer(org))
        assert response.status_code == 200, response.text
        pages.append([item["application_id"] for item in response.json()["items"]])
        cursor = response.json()["next_cursor"]
        if cursor is None:
            break
        params["cursor"] = cursor

    assert [len(page) for page in pages] == [2, 2, 1]
    assert [application_id for page in pages for application_id in page] == [
        application["application_id"] for application in reversed(created)
    ]


@pytest.mark.parametrize("cursor", ["not-a-cursor", "eyJ0IjogMSwgImlkIjogIm5vcGUifQ"])
async def test_a_cursor_the_service_did_not_make_is_422(
    applications: httpx.AsyncClient, org: str, cursor: str
) -> None:
    response = await applications.get(
        "/applications", params={"cursor": cursor}, headers=as_employer(org)
    )

    assert "cursor" in assert_problem(response, 422)["detail"]


@pytest.mark.parametrize(
    ("params", "field"),
    [({"limit": 0}, "limit"), ({"limit": 101}, "limit"), ({"status": "archived"}, "status")],
)
async def test_an_invalid_list_parameter_is_422_naming_it(
    applications: httpx.AsyncClient, org: str, params: dict[str, Any], field: str
) -> None:
    response = await applications.get("/applications", params=params, headers=as_employer(org))

    assert problem_fields(response) == {field}


# --- status workflow --------------------------------------------------------------------------


async def test_the_employer_moves_submitted_to_screening(
    applications: httpx.AsyncClient, submitted: Applied
) -> None:
    response = await move(
        applications,
        submitted.application_id,
        "screening",
        as_employer(submitted.org, sub="user-recruiter-ana"),
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "screening"
    assert body["version"] == 2
    assert [(h["from_status"], h["to_status"], h["changed_by"]) for h in body["history"]] == [
        ("submitted", "screening", "user-recruiter-ana")
    ]
    assert await fetch(applications, submitted.application_id) == body


async def test_a_move_publishes_application_status_changed(
    applications: httpx.AsyncClient, servers: Servers, submitted: Applied
) -> None:
    await moved(
        applications,
        submitted.application_id,
        "screening",
        as_employer(submitted.org, sub="user-recruiter-ana"),
    )

    records = await status_changes_until(servers, submitted.application_id, 2)

    assert len(records) == 1
    event = records[0].json()
    assert event["subject"] == submitted.application_id
    data = event["data"]
    assert data["from_status"] == "submitted"
    assert data["to_status"] == "screening"
    assert data["changed_by"] == "user-recruiter-ana"
    assert data["version"] == 2
    assert data["candidate_id"] == submitted.candidate
    assert data["posting_id"] == submitted.posting_id
    assert data["org"] == submitted.org


async def test_the_candidate_withdraws_and_the_withdrawal_is_published_with_its_reason(
    applications: httpx.AsyncClient, servers: Servers, submitted: Applied
) -> None:
    response = await move(
        applications,
        submitted.application_id,
        "withdrawn",
        as_candidate(submitted.candidate),
        reason="I accepted another offer.",
    )

    assert response.status_code == 200, response.text
    assert (response.json()["status"], response.json()["version"]) == ("withdrawn", 2)
    assert response.json()["history"][-1]["reason"] == "I accepted another offer."
    records = await status_changes_until(servers, submitted.application_id, 2)
    data = records[-1].json()["data"]
    assert (data["from_status"], data["to_status"]) == ("submitted", "withdrawn")
    assert data["changed_by"] == submitted.candidate
    assert data["reason"] == "I accepted another offer."


async def test_an_illegal_move_is_409_naming_the_allowed_moves(
    applications: httpx.AsyncClient, submitted: Applied
) -> None:
    employer = as_employer(submitted.org)
    await moved(applications, submitted.application_id, "screening", employer)

    response = await move(applications, submitted.application_id, "hired", employer)

    problem = assert_problem(response, 409)
    assert sorted(problem["allowed_moves"]) == ["interview", "rejected", "withdrawn"]
    after = await fetch(applications, submitted.application_id)
    assert (after["status"], after["version"]) == ("screening", 2)


async def test_a_move_by_the_wrong_party_is_403(
    applications: httpx.AsyncClient, one_application: Applied
) -> None:
    response = await move(
        applications,
        one_application.application_id,
        "screening",
        as_candidate(one_application.candidate),
    )

    assert "employer" in assert_problem(response, 403)["detail"]
    after = await fetch(applications, one_application.application_id)
    assert (after["status"], after["version"]) == ("submitted", 1)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"to_status": "archived"}, "to_status", id="unknown-status"),
        pytest.param({}, "to_status", id="no-status"),
        pytest.param({"to_status": "screening", "note": "call Monday"}, "note", id="extra"),
        pytest.param({"to_status": "rejected", "reason": "x" * 1001}, "reason", id="long-reason"),
    ],
)
async def test_an_invalid_status_request_is_422_naming_the_field(
    applications: httpx.AsyncClient, one_application: Applied, body: dict[str, Any], field: str
) -> None:
    response = await applications.post(
        f"/applications/{one_application.application_id}/status",
        json=body,
        headers=as_employer(one_application.org),
    )

    assert problem_fields(response) == {field}


async def test_moving_an_unknown_application_is_404(
    applications: httpx.AsyncClient, org: str
) -> None:
    response = await move(applications, str(ObjectId()), "screening", as_employer(org))

    assert_problem(response, 404)


# --- authentication ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/postings/{posting}/applications", application_body()),
        ("GET", "/applications", None),
        ("GET", "/applications/{id}", None),
        ("POST", "/applications/{id}/status", {"to_status": "screening"}),
    ],
)
async def test_every_application_route_needs_a_token(
    applications: httpx.AsyncClient,
    one_application: Applied,
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    response = await applications.request(
        method,
        path.format(id=one_application.application_id, posting=one_application.posting_id),
        json=body,
    )

    assert_problem(response, 401)

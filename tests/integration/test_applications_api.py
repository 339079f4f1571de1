"""The applications API on the real broker and database: apply (duplicates, concurrency,
Idempotency-Key), read and list by party, and the status workflow with the events each step
publishes. Postings reach the service only as `posting.*` events on Kafka, as in production;
each test uses postings, orgs and candidates of its own.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from bson import ObjectId
from pymongo import AsyncMongoClient

from hirestream.applications.app import ApplicationsSettings, create_app
from hirestream.shared.events.envelope import serialize
from hirestream.shared.events.postings import POSTING_CLOSED, CloseReason, PostingClosed
from hirestream.shared.events.types import utc_now
from tests.conftest import bearer, client_for, settings_for, unique_db
from tests.support.factories import new_posting_id, posting_created_event
from tests.support.kafka import Record, produce, read_until
from tests.support.polling import eventually
from tests.support.servers import Servers

pytestmark = pytest.mark.integration

SUBMITTED = "application.submitted"
STATUS_CHANGED = "application.status_changed"
# Longer than the outbox's inline grace (5 s), after which its sweep would send again anything
# the relay left behind: a duplicate, if there is one, has shown up by then.
DUPLICATE_GRACE_S = 6.0
POSTING_SKILLS = ["python", "kafka", "mongodb", "kubernetes"]


@pytest.fixture(scope="module")
def applications_db() -> str:
    return unique_db("applications")


@pytest.fixture(scope="module")
async def applications(
    base_env: dict[str, str], applications_db: str
) -> AsyncIterator[httpx.AsyncClient]:
    settings = settings_for(ApplicationsSettings, base_env, mongodb_database=applications_db)
    async for client in client_for(create_app(settings)):
        yield client


# --- postings, fed to the read model through Kafka -----------------------------------------


@dataclass(frozen=True)
class Board:
    """Publishes postings the way the postings service does, and waits until the
    applications service's read model holds them."""

    servers: Servers
    mongo: AsyncMongoClient[dict[str, Any]]
    db: str

    async def wait_for(self, posting_id: str, version: int) -> None:
        views = self.mongo[self.db]["postings_view"]
        query = {"_id": posting_id, "version": {"$gte": version}}
        await eventually(lambda: views.find_one(query))

    async def open(self, org: str, *, skills: list[str] | None = None) -> str:
        posting_id = new_posting_id()
        event = posting_created_event(
            posting_id, org=org, skills=POSTING_SKILLS if skills is None else skills
        )
        await produce(
            self.servers.kafka_bootstrap, "posting.created", event, key=posting_id.encode()
        )
        await self.wait_for(posting_id, 1)
        return posting_id

    async def close(self, posting_id: str, org: str) -> None:
        closed = PostingClosed(
            posting_id=posting_id,
            org=org,
            reason=CloseReason.FILLED,
            version=2,
            closed_at=utc_now(),
        )
        await produce(
            self.servers.kafka_bootstrap,
            "posting.closed",
            serialize(POSTING_CLOSED.new(closed, source="tests")),
            key=posting_id.encode(),
        )
        await self.wait_for(posting_id, 2)


@pytest.fixture(scope="module")
def board(
    applications: httpx.AsyncClient,  # the service, and so its consumers, must be running
    servers: Servers,
    mongo: AsyncMongoClient[dict[str, Any]],
    applications_db: str,
) -> Board:
    return Board(servers, mongo, applications_db)


# --- callers and requests ---------------------------------------------------------------------


def new_org() -> str:
    return f"org-{uuid.uuid4().hex[:12]}"


def new_candidate() -> str:
    return f"cand-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def org() -> str:
    return new_org()


@pytest.fixture
def candidate() -> str:
    return new_candidate()


def as_candidate(sub: str) -> dict[str, str]:
    return bearer("candidate", sub=sub)


def as_employer(org: str, sub: str = "user-recruiter-ana") -> dict[str, str]:
    return bearer("employer", sub=sub, org=org)


def as_admin() -> dict[str, str]:
    return bearer("admin", sub="user-admin-root")


def application_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "Maya Okafor",
        "email": "maya.okafor@example.com",
        "resume_url": "https://cdn.example.com/resumes/maya-okafor.pdf",
        "consent": {"processing": True},
        "skills": ["Python", " Kafka ", "PostgreSQL"],
        "cover_letter": "I have run Kafka pipelines in production for four years.",
    }
    body.update(changes)
    return body


async def apply(
    client: httpx.AsyncClient,
    posting_id: str,
    sub: str,
    *,
    key: str | None = None,
    **changes: Any,
) -> httpx.Response:
    headers = as_candidate(sub)
    if key is not None:
        headers["Idempotency-Key"] = key
    return await client.post(
        f"/postings/{posting_id}/applications", json=application_body(**changes), headers=headers
    )


async def applied(client: httpx.AsyncClient, posting_id: str, sub: str) -> dict[str, Any]:
    response = await apply(client, posting_id, sub)
    assert response.status_code == 201, response.text
    application: dict[str, Any] = response.json()
    return application


async def move(
    client: httpx.AsyncClient,
    application_id: str,
    to_status: str,
    headers: dict[str, str],
    reason: str | None = None,
) -> httpx.Response:
    body: dict[str, Any] = {"to_status": to_status}
    if reason is not None:
        body["reason"] = reason
    return await client.post(f"/applications/{application_id}/status", json=body, headers=headers)


async def moved(
    client: httpx.AsyncClient, application_id: str, to_status: str, headers: dict[str, str]
) -> dict[str, Any]:
    response = await move(client, application_id, to_status, headers)
    assert response.status_code == 200, response.text
    application: dict[str, Any] = response.json()
    return application


async def fetch(client: httpx.AsyncClient, application_id: str) -> dict[str, Any]:
    response = await client.get(f"/applications/{application_id}", headers=as_admin())
    assert response.status_code == 200, response.text
    application: dict[str, Any] = response.json()
    return application


async def listed(client: httpx.AsyncClient, headers: dict[str, str], **params: Any) -> list[str]:
    response = await client.get("/applications", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return [item["application_id"] for item in response.json()["items"]]


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem: dict[str, Any] = response.json()
    assert problem["status"] == status
    return problem


def problem_fields(response: httpx.Response) -> set[str]:
    return {error["field"] for error in assert_problem(response, 422)["errors"]}


# --- events on the wire ----------------------------------------------------------------------


def for_posting(records: Iterable[Record], posting_id: str) -> list[Record]:
    # Skip values that are not events: the fault tests put poison on the same topic.
    return [r for r in records if _data_of(r).get("posting_id") == posting_id]


def _data_of(record: Record) -> dict[str, Any]:
    try:
        data = record.json()["data"]
    except (ValueError, KeyError, TypeError):
        return {}
    return data if isinstance(data, dict) else {}


def keyed(records: Iterable[Record], application_id: str) -> list[Record]:
    return [r for r in records if r.key == application_id.encode()]


async def settled_submissions(servers: Servers, posting_id: str, *, expected: int) -> list[Record]:
    """Every application.submitted of this posting: read until `expected` are there, then
    read everything again once a duplicate has had the time to show."""
    await read_until(
        servers.kafka_bootstrap,
        [SUBMITTED],
        lambda rs: len(for_posting(rs, posting_id)) >= expected,
    )
    records = await read_until(
        servers.kafka_bootstrap, [SUBMITTED], lambda rs: False, timeout_s=DUPLICATE_GRACE_S
    )
    return for_posting(records, posting_id)


async def status_changes_until(servers: Servers, application_id: str, version: int) -> list[Record]:
    """The application's status_changed records up to the one carrying `version`. One key, one
    partition, published in order from one outbox: any event an earlier request wrongly
    caused would be among them."""

    def arrived(records: list[Record]) -> bool:
        return any(r.json()["data"]["version"] == version for r in keyed(records, application_id))

    records = await read_until(servers.kafka_bootstrap, [STATUS_CHANGED], arrived)
    return keyed(records, application_id)


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
        "email": "maya.okafor@example.com",
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


async def test_applying_to_a_closed_posting_is_409(
    applications: httpx.AsyncClient, board: Board, org: str, candidate: str
) -> None:
    posting_id = await board.open(org)
    await board.close(posting_id, org)

    response = await apply(applications, posting_id, candidate)

    problem = assert_problem(response, 409)
    assert "closed" in problem["detail"]
    assert await listed(applications, as_candidate(candidate)) == []


async def test_applying_twice_is_409_naming_the_existing_application(
    applications: httpx.AsyncClient, board: Board, org: str, candidate: str
) -> None:
    posting_id = await board.open(org)
    first = await applied(applications, posting_id, candidate)

    again = await apply(applications, posting_id, candidate, name="Maya O.")

    problem = assert_problem(again, 409)
    assert problem["application_id"] == first["application_id"]
    assert first["application_id"] in problem["detail"]
    assert await listed(applications, as_candidate(candidate)) == [first["application_id"]]


async def test_another_candidate_may_apply_to_the_same_posting(
    applications: httpx.AsyncClient, board: Board, org: str, candidate: str
) -> None:
    posting_id = await board.open(org)
    first = await applied(applications, posting_id, candidate)

    response = await apply(
        applications, posting_id, new_candidate(), name="Liam Chen", email="liam.chen@example.com"
    )

    assert response.status_code == 201, response.text
    assert response.json()["application_id"] != first["application_id"]


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


async def test_applying_without_a_token_is_401(
    applications: httpx.AsyncClient, board: Board, org: str
) -> None:
    posting_id = await board.open(org)

    response = await applications.post(
        f"/postings/{posting_id}/applications", json=application_body()
    )

    assert_problem(response, 401)


@pytest.mark.parametrize(
    ("changes", "fields"),
    [
        pytest.param({"email": "maya.okafor-at-example.com"}, {"email"}, id="bad-email"),
        pytest.param({"resume_url": "my resume.pdf"}, {"resume_url"}, id="bad-resume-url"),
        pytest.param({"name": ""}, {"name"}, id="empty-name"),
        pytest.param({"github": "https://github.com/maya"}, {"github"}, id="unknown-field"),
        pytest.param({"skills": "python, kafka"}, {"skills"}, id="skills-not-a-list"),
        pytest.param(
            {"email": "nope", "resume_url": "nope"}, {"email", "resume_url"}, id="two-fields"
        ),
    ],
)
async def test_an_invalid_application_is_422_naming_the_fields(
    applications: httpx.AsyncClient,
    board: Board,
    org: str,
    candidate: str,
    changes: dict[str, Any],
    fields: set[str],
) -> None:
    posting_id = await board.open(org)

    response = await apply(applications, posting_id, candidate, **changes)

    assert problem_fields(response) == fields
    assert await listed(applications, as_candidate(candidate)) == []


async def test_an_application_without_its_required_fields_is_422_naming_them(
    applications: httpx.AsyncClient, board: Board, org: str, candidate: str
) -> None:
    posting_id = await board.open(org)

    response = await applications.post(
        f"/postings/{posting_id}/applications",
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
            assert response.json()["application_id"] == winner["application_id"]
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


async def test_an_idempotency_key_reused_for_another_body_is_422(
    applications: httpx.AsyncClient, board: Board, org: str, candidate: str
) -> None:
    posting_id = await board.open(org)
    key = f"apply-{uuid.uuid4()}"
    first = await apply(applications, posting_id, candidate, key=key)
    assert first.status_code == 201, first.text

    other = await apply(
        applications, posting_id, candidate, key=key, cover_letter="A different letter."
    )

    problem = assert_problem(other, 422)
    assert "Idempotency-Key" in problem["detail"]
    assert (await fetch(applications, first.json()["application_id"]))["cover_letter"] == (
        application_body()["cover_letter"]
    )


async def test_an_idempotency_key_reused_for_another_posting_is_422(
    applications: httpx.AsyncClient, board: Board, org: str, candidate: str
) -> None:
    first_posting, second_posting = [await board.open(org) for _ in range(2)]
    key = f"apply-{uuid.uuid4()}"
    first = await apply(applications, first_posting, candidate, key=key)
    assert first.status_code == 201, first.text

    other = await apply(applications, second_posting, candidate, key=key)

    assert_problem(other, 422)
    assert await listed(applications, as_candidate(candidate)) == [first.json()["application_id"]]


# --- read one ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Applied:
    org: str
    posting_id: str
    candidate: str
    application_id: str


@pytest.fixture(scope="module")
async def one_application(applications: httpx.AsyncClient, board: Board) -> Applied:
    """One application the read tests look at and never change."""
    org, candidate = new_org(), new_candidate()
    posting_id = await board.open(org)
    application = await applied(applications, posting_id, candidate)
    return Applied(org, posting_id, candidate, application["application_id"])


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


async def test_an_employer_lists_only_their_orgs_applications(
    applications: httpx.AsyncClient, board: Board, org: str, candidate: str
) -> None:
    ours, theirs = await board.open(org), await board.open(new_org())
    mine = await applied(applications, ours, candidate)
    await applied(applications, theirs, candidate)

    assert await listed(applications, as_employer(org)) == [mine["application_id"]]


async def test_an_employer_filters_by_posting(
    applications: httpx.AsyncClient, board: Board, org: str
) -> None:
    backend, frontend = await board.open(org), await board.open(org, skills=["react"])
    wanted = [await applied(applications, backend, new_candidate()) for _ in range(2)]
    await applied(applications, frontend, new_candidate())

    assert await listed(applications, as_employer(org), posting_id=backend) == [
        application["application_id"] for application in reversed(wanted)
    ]


async def test_an_employer_filters_by_status(
    applications: httpx.AsyncClient, board: Board, org: str
) -> None:
    posting_id = await board.open(org)
    screened, waiting = [await applied(applications, posting_id, new_candidate()) for _ in range(2)]
    await moved(applications, screened["application_id"], "screening", as_employer(org))

    employer = as_employer(org)
    assert await listed(applications, employer, status="screening") == [screened["application_id"]]
    assert await listed(applications, employer, status="submitted") == [waiting["application_id"]]
    assert await listed(applications, employer, status="hired") == []


async def test_an_employer_cannot_list_another_orgs_posting_by_filtering_on_it(
    applications: httpx.AsyncClient, board: Board, org: str, candidate: str
) -> None:
    theirs = await board.open(new_org())
    await applied(applications, theirs, candidate)

    assert await listed(applications, as_employer(org), posting_id=theirs) == []


async def test_an_admin_lists_every_orgs_applications(
    applications: httpx.AsyncClient, board: Board, org: str
) -> None:
    first = await applied(applications, await board.open(org), new_candidate())
    second = await applied(applications, await board.open(new_org()), new_candidate())

    assert await listed(applications, as_admin(), limit=2) == [
        second["application_id"],
        first["application_id"],
    ]


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


@pytest.fixture
async def submitted(
    applications: httpx.AsyncClient, board: Board, org: str, candidate: str
) -> Applied:
    """A fresh application in `submitted`, to a posting of `org`, by `candidate`."""
    posting_id = await board.open(org)
    application = await applied(applications, posting_id, candidate)
    return Applied(org, posting_id, candidate, application["application_id"])


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


async def test_an_illegal_move_publishes_nothing(
    applications: httpx.AsyncClient, servers: Servers, submitted: Applied
) -> None:
    employer = as_employer(submitted.org)
    await moved(applications, submitted.application_id, "screening", employer)
    refused = await move(applications, submitted.application_id, "hired", employer)
    assert refused.status_code == 409, refused.text
    await moved(applications, submitted.application_id, "interview", employer)

    records = await status_changes_until(servers, submitted.application_id, 3)

    assert [(r.json()["data"]["to_status"], r.json()["data"]["version"]) for r in records] == [
        ("screening", 2),
        ("interview", 3),
    ]


@pytest.mark.parametrize("to_status", ["submitted", "offer", "hired"])
async def test_skipping_or_repeating_a_step_is_409(
    applications: httpx.AsyncClient, submitted: Applied, to_status: str
) -> None:
    response = await move(
        applications, submitted.application_id, to_status, as_employer(submitted.org)
    )

    problem = assert_problem(response, 409)
    assert sorted(problem["allowed_moves"]) == ["rejected", "screening", "withdrawn"]


@pytest.mark.parametrize("to_status", ["screening", "rejected", "hired", "submitted"])
async def test_a_candidate_may_do_nothing_but_withdraw(
    applications: httpx.AsyncClient, submitted: Applied, to_status: str
) -> None:
    response = await move(
        applications, submitted.application_id, to_status, as_candidate(submitted.candidate)
    )

    assert_problem(response, 403)
    after = await fetch(applications, submitted.application_id)
    assert (after["status"], after["version"]) == ("submitted", 1)


async def test_an_employer_may_not_withdraw(
    applications: httpx.AsyncClient, submitted: Applied
) -> None:
    response = await move(
        applications, submitted.application_id, "withdrawn", as_employer(submitted.org)
    )

    assert_problem(response, 403)


async def test_the_candidate_withdraws_and_the_withdrawal_is_published(
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
    records = await status_changes_until(servers, submitted.application_id, 2)
    data = records[-1].json()["data"]
    assert (data["from_status"], data["to_status"]) == ("submitted", "withdrawn")
    assert data["changed_by"] == submitted.candidate
    assert data["reason"] == "I accepted another offer."


@pytest.mark.parametrize(
    ("to_status", "caller"),
    [
        pytest.param("screening", lambda a: as_employer(a.org), id="employer-screens"),
        pytest.param("rejected", lambda a: as_employer(a.org), id="employer-rejects"),
        pytest.param("withdrawn", lambda a: as_candidate(a.candidate), id="withdraws-again"),
    ],
)
async def test_a_withdrawn_application_moves_no_more(
    applications: httpx.AsyncClient,
    submitted: Applied,
    to_status: str,
    caller: Callable[[Applied], dict[str, str]],
) -> None:
    await moved(
        applications, submitted.application_id, "withdrawn", as_candidate(submitted.candidate)
    )

    response = await move(applications, submitted.application_id, to_status, caller(submitted))

    assert assert_problem(response, 409)["allowed_moves"] == []
    after = await fetch(applications, submitted.application_id)
    assert (after["status"], after["version"]) == ("withdrawn", 2)


@pytest.mark.parametrize(
    ("to_status", "caller"),
    [
        pytest.param("screening", lambda: as_employer(new_org()), id="employer-of-another-org"),
        pytest.param("withdrawn", lambda: as_candidate(new_candidate()), id="another-candidate"),
    ],
)
async def test_an_outsider_moving_an_application_gets_404(
    applications: httpx.AsyncClient,
    submitted: Applied,
    to_status: str,
    caller: Callable[[], dict[str, str]],
) -> None:
    response = await move(applications, submitted.application_id, to_status, caller())

    assert_problem(response, 404)
    after = await fetch(applications, submitted.application_id)
    assert (after["status"], after["version"]) == ("submitted", 1)


async def test_an_admin_may_move_any_application(
    applications: httpx.AsyncClient, submitted: Applied
) -> None:
    body = await moved(applications, submitted.application_id, "screening", as_admin())

    assert body["status"] == "screening"
    assert body["history"][-1]["changed_by"] == "user-admin-root"


async def test_a_rejection_carries_its_reason_in_the_event(
    applications: httpx.AsyncClient, servers: Servers, submitted: Applied
) -> None:
    employer = as_employer(submitted.org)
    await moved(applications, submitted.application_id, "screening", employer)
    reason = "We are looking for more hands-on Kubernetes experience."

    response = await move(
        applications, submitted.application_id, "rejected", employer, reason=reason
    )

    assert response.status_code == 200, response.text
    assert response.json()["history"][-1]["reason"] == reason
    records = await status_changes_until(servers, submitted.application_id, 3)
    data = records[-1].json()["data"]
    assert (data["from_status"], data["to_status"], data["version"]) == ("screening", "rejected", 3)
    assert data["reason"] == reason


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
    applications: httpx.AsyncClient, submitted: Applied, body: dict[str, Any], field: str
) -> None:
    response = await applications.post(
        f"/applications/{submitted.application_id}/status",
        json=body,
        headers=as_employer(submitted.org),
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
        method, path.format(id=one_application.application_id), json=body
    )

    assert_problem(response, 401)

"""A posting's life through the postings API, on the real broker and database.

Search (every filter, newest first, cursor pages), change with If-Match, close, and the
`posting.*` events each step publishes: every route and every error status it can answer.
Each test works under an org of its own (the search catalogue's org is read, never written,
by the tests that share it), so postings made by other tests never show up.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from bson import ObjectId

from hirestream.postings.app import PostingsSettings, create_app
from hirestream.shared.events.postings import POSTING_CLOSED, POSTING_UPDATED
from tests.conftest import bearer, client_for, settings_for, unique_db
from tests.support.factories import posting_body
from tests.support.kafka import Record, read_until
from tests.support.servers import Servers

pytestmark = pytest.mark.integration

Auth = Callable[..., dict[str, str]]

POSTING_TOPICS = ["posting.created", "posting.updated", "posting.closed"]
# Longer than the outbox's inline grace (5 s), after which its sweep would send again anything
# the relay left behind: a duplicate, if there is one, has shown up by then.
DUPLICATE_GRACE_S = 6.0


@pytest.fixture(scope="module")
async def postings(base_env: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    settings = settings_for(PostingsSettings, base_env, mongodb_database=unique_db("postings"))
    async for client in client_for(create_app(settings)):
        yield client


@pytest.fixture
def org() -> str:
    return new_org()


def new_org() -> str:
    return f"org-{uuid.uuid4().hex[:12]}"


def employer(org: str) -> dict[str, str]:
    return bearer("employer", org=org)


def if_match(org: str, tag: str) -> dict[str, str]:
    return {**employer(org), "If-Match": tag}


async def create(client: httpx.AsyncClient, org: str, **changes: Any) -> dict[str, Any]:
    response = await client.post("/postings", json=posting_body(**changes), headers=employer(org))
    assert response.status_code == 201, response.text
    posting: dict[str, Any] = response.json()
    return posting


async def search(client: httpx.AsyncClient, **params: str | int) -> httpx.Response:
    return await client.get("/postings", params=params, headers=bearer("candidate"))


def item_ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [item["posting_id"] for item in response.json()["items"]]


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem: dict[str, Any] = response.json()
    assert problem["status"] == status
    return problem


def problem_fields(response: httpx.Response) -> set[str]:
    return {error["field"] for error in assert_problem(response, 422)["errors"]}


def keyed(records: Iterable[Record], posting_id: str) -> list[Record]:
    return [record for record in records if record.key == posting_id.encode()]


async def settled_events(
    servers: Servers, topics: list[str], posting_id: str, *, expected: int
) -> list[Record]:
    """Every record of this posting on `topics`: read until `expected` are there, then read
    everything again once a duplicate has had the time to show."""
    await read_until(
        servers.kafka_bootstrap, topics, lambda rs: len(keyed(rs, posting_id)) >= expected
    )
    records = await read_until(
        servers.kafka_bootstrap, topics, lambda rs: False, timeout_s=DUPLICATE_GRACE_S
    )
    return keyed(records, posting_id)


# --- search ---------------------------------------------------------------------------------

# A small job board under one org, created oldest first in this order.
CATALOGUE: dict[str, dict[str, Any]] = {
    "backend": posting_body(),
    "ml": posting_body(
        title="Machine Learning Engineer",
        description="Train and serve ranking models with PyTorch on a GPU cluster.",
        location={"city": "Berlin", "country": "DE"},
        workplace="remote",
        seniority="mid",
        skills=["Python", "Machine Learning", "PyTorch"],
        salary={"min": 7_000_000, "max": 9_000_000, "currency": "EUR", "period": "year"},
    ),
    "frontend": posting_body(
        title="Frontend Engineer",
        description="Build accessible React interfaces in TypeScript for our hiring tools.",
        location={"city": "Toronto", "region": "ON", "country": "CA"},
        workplace="onsite",
        employment_type="contract",
        seniority="junior",
        skills=["TypeScript", "React"],
        salary=None,
        contact_email=None,
    ),
    "intern": posting_body(
        title="Data Engineering Intern",
        description="Write SQL pipelines and Python jobs for our analytics warehouse.",
        location={"city": "San Francisco", "region": "CA", "country": "US"},
        workplace="onsite",
        employment_type="internship",
        seniority="junior",
        skills=["SQL", "Python"],
        salary={"min": 3_500, "max": 4_000, "currency": "USD", "period": "hour"},
    ),
    "sre": posting_body(
        title="Staff Site Reliability Engineer",
        description="Keep our Kafka clusters and Kubernetes fleet healthy and quick to recover.",
        location={"city": "SEATTLE", "region": "WA", "country": "US"},
        workplace="remote",
        seniority="staff",
        skills=["Kafka", "Kubernetes", "Terraform"],
        salary={"min": 21_000_000, "max": 25_000_000, "currency": "USD", "period": "year"},
    ),
}


@dataclass(frozen=True)
class Catalogue:
    org: str
    ids: dict[str, str]  # name in CATALOGUE -> posting id

    def names(self, response: httpx.Response) -> set[str]:
        by_id = {posting_id: name for name, posting_id in self.ids.items()}
        return {by_id[posting_id] for posting_id in item_ids(response)}


@pytest.fixture(scope="module")
async def catalogue(postings: httpx.AsyncClient) -> Catalogue:
    """CATALOGUE, published under an org of its own; the tests using it only read it."""
    org = new_org()
    ids: dict[str, str] = {}
    for name, body in CATALOGUE.items():
        response = await postings.post("/postings", json=body, headers=employer(org))
        assert response.status_code == 201, response.text
        ids[name] = response.json()["posting_id"]
    return Catalogue(org, ids)


async def test_search_lists_newest_first(postings: httpx.AsyncClient, catalogue: Catalogue) -> None:
    response = await search(postings, org=catalogue.org)
    assert item_ids(response) == list(reversed(catalogue.ids.values()))
    assert response.json()["next_cursor"] is None


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        pytest.param("kafka", {"backend", "sre"}, id="description-or-skill"),
        pytest.param("FRONTEND", {"frontend"}, id="title-any-case"),
        pytest.param("accessible", {"frontend"}, id="description-only"),
        pytest.param("pytorch", {"ml"}, id="skill"),
        pytest.param("Kafka Clusters", {"sre"}, id="all-words-present"),
        pytest.param("kafka react", set(), id="not-all-words-present"),
    ],
)
async def test_q_matches_postings_holding_every_word(
    postings: httpx.AsyncClient, catalogue: Catalogue, q: str, expected: set[str]
) -> None:
    assert catalogue.names(await search(postings, org=catalogue.org, q=q)) == expected


@pytest.mark.parametrize(
    ("skills", "expected"),
    [
        pytest.param("python", {"backend", "ml", "intern"}, id="one"),
        pytest.param("Python,KAFKA", {"backend"}, id="all-required-any-case"),
        pytest.param(" Machine   Learning , python ", {"ml"}, id="normalised"),
        pytest.param("python,react", set(), id="none-has-both"),
    ],
)
async def test_skills_filter_requires_every_skill(
    postings: httpx.AsyncClient, catalogue: Catalogue, skills: str, expected: set[str]
) -> None:
    assert catalogue.names(await search(postings, org=catalogue.org, skills=skills)) == expected


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        pytest.param({"city": "seattle"}, {"backend", "sre"}, id="city-any-case"),
        pytest.param({"city": "San Francisco"}, {"intern"}, id="city-two-words"),
        pytest.param({"country": "US"}, {"backend", "intern", "sre"}, id="country"),
        pytest.param({"country": "de"}, {"ml"}, id="country-lower-case"),
        pytest.param({"country": "CA", "city": "toronto"}, {"frontend"}, id="country-and-city"),
        pytest.param({"workplace": "remote"}, {"ml", "sre"}, id="workplace"),
        pytest.param({"seniority": "junior"}, {"frontend", "intern"}, id="seniority"),
        pytest.param({"employment_type": "internship"}, {"intern"}, id="employment-type"),
        pytest.param(
            {"workplace": "onsite", "employment_type": "contract"}, {"frontend"}, id="combined"
        ),
    ],
)
async def test_place_and_kind_filters(
    postings: httpx.AsyncClient,
    catalogue: Catalogue,
    filters: dict[str, str],
    expected: set[str],
) -> None:
    assert catalogue.names(await search(postings, org=catalogue.org, **filters)) == expected


@pytest.mark.parametrize(
    ("min_salary", "expected"),
    [
        pytest.param(19_000_000, {"backend", "sre"}, id="salary-max-equal-matches"),
        pytest.param(19_000_001, {"sre"}, id="salary-max-below-does-not"),
        pytest.param(0, {"backend", "ml", "intern", "sre"}, id="no-salary-never-matches"),
    ],
)
async def test_min_salary_matches_salary_max_at_least(
    postings: httpx.AsyncClient, catalogue: Catalogue, min_salary: int, expected: set[str]
) -> None:
    response = await search(postings, org=catalogue.org, min_salary=min_salary)
    assert catalogue.names(response) == expected


async def test_org_filter_lists_only_that_orgs_postings(
    postings: httpx.AsyncClient, catalogue: Catalogue, org: str
) -> None:
    ours = await create(postings, org, title="Backend Developer")

    assert item_ids(await search(postings, org=org)) == [ours["posting_id"]]
    assert catalogue.names(await search(postings, org=catalogue.org)) == set(CATALOGUE)


async def test_closed_postings_are_listed_only_with_status_closed(
    postings: httpx.AsyncClient, org: str
) -> None:
    still_open = await create(postings, org)
    closed = await create(postings, org, title="Backend Developer (filled)")
    response = await postings.post(
        f"/postings/{closed['posting_id']}/close", json={"reason": "filled"}, headers=employer(org)
    )
    assert response.status_code == 200, response.text

    assert item_ids(await search(postings, org=org)) == [still_open["posting_id"]]
    assert item_ids(await search(postings, org=org, status="closed")) == [closed["posting_id"]]


async def test_search_finds_a_posting_by_its_changed_fields(
    postings: httpx.AsyncClient, org: str
) -> None:
    posting = await create(postings, org)
    response = await postings.patch(
        f"/postings/{posting['posting_id']}",
        json={"title": "Senior Rust Developer", "skills": ["Rust", "Tokio"]},
        headers=if_match(org, '"1"'),
    )
    assert response.status_code == 200, response.text

    assert item_ids(await search(postings, org=org, q="rust")) == [posting["posting_id"]]
    assert item_ids(await search(postings, org=org, skills="tokio")) == [posting["posting_id"]]
    assert item_ids(await search(postings, org=org, skills="kafka")) == []


async def test_limit_pages_through_every_posting_once(
    postings: httpx.AsyncClient, org: str
) -> None:
    created = [(await create(postings, org, title=f"Backend Developer {n}")) for n in range(5)]

    pages: list[list[str]] = []
    params: dict[str, str | int] = {"org": org, "limit": 2}
    while True:
        response = await search(postings, **params)
        pages.append(item_ids(response))
        cursor = response.json()["next_cursor"]
        if cursor is None:
            break
        params["cursor"] = cursor

    assert [len(page) for page in pages] == [2, 2, 1]
    assert [posting_id for page in pages for posting_id in page] == [
        posting["posting_id"] for posting in reversed(created)
    ]


async def test_pages_stay_consistent_while_postings_are_added(
    postings: httpx.AsyncClient, org: str
) -> None:
    before = [(await create(postings, org, title=f"Backend Developer {n}")) for n in range(5)]

    seen: list[str] = []
    params: dict[str, str | int] = {"org": org, "limit": 2}
    while True:
        response = await search(postings, **params)
        seen.extend(item_ids(response))
        # Newer postings arrive between page requests: they belong before page one.
        await create(postings, org, title="Backend Developer (just in)")
        cursor = response.json()["next_cursor"]
        if cursor is None:
            break
        params["cursor"] = cursor

    assert seen == [posting["posting_id"] for posting in reversed(before)]


def _cursor(position: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        pytest.param("not-a-cursor", id="garbage"),
        pytest.param(_cursor({"t": 1_790_000_000_000, "id": "nope"}), id="bad-id"),
        pytest.param(_cursor({"id": str(ObjectId())}), id="no-time"),
        pytest.param(_cursor({"t": 10**20, "id": str(ObjectId())}), id="time-out-of-range"),
    ],
)
async def test_a_cursor_the_service_did_not_make_is_422(
    postings: httpx.AsyncClient, org: str, cursor: str
) -> None:
    problem = assert_problem(await search(postings, org=org, cursor=cursor), 422)
    assert "cursor" in problem["detail"]


@pytest.mark.parametrize("limit", [0, 101])
async def test_limit_outside_1_to_100_is_422(
    postings: httpx.AsyncClient, org: str, limit: int
) -> None:
    assert problem_fields(await search(postings, org=org, limit=limit)) == {"limit"}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("workplace", "moon"),
        ("seniority", "wizard"),
        ("employment_type", "forever"),
        ("country", "USA"),
        ("min_salary", -1),
        ("status", "draft"),
    ],
)
async def test_an_invalid_filter_is_422_naming_it(
    postings: httpx.AsyncClient, org: str, name: str, value: str | int
) -> None:
    assert problem_fields(await search(postings, org=org, **{name: value})) == {name}


# --- create with an Idempotency-Key --------------------------------------------------------


async def test_a_retry_with_the_same_idempotency_key_replays_the_first_posting(
    postings: httpx.AsyncClient, servers: Servers, org: str
) -> None:
    headers = {**bearer("employer", sub=f"recruiter-{org}", org=org), "Idempotency-Key": "p-1"}
    first = await postings.post("/postings", json=posting_body(), headers=headers)
    assert first.status_code == 201, first.text

    retries = await asyncio.gather(
        *(postings.post("/postings", json=posting_body(), headers=headers) for _ in range(5))
    )

    for retry in retries:
        assert retry.status_code == 201, retry.text
        assert retry.content == first.content
        assert retry.headers["location"] == first.headers["location"]
        assert retry.headers["etag"] == first.headers["etag"]
        assert retry.headers["idempotent-replayed"] == "true"
    posting_id = first.json()["posting_id"]
    records = await settled_events(servers, ["posting.created"], posting_id, expected=1)
    assert len(records) == 1
    assert item_ids(await search(postings, org=org)) == [posting_id]


async def test_an_idempotency_key_reused_for_another_posting_is_422(
    postings: httpx.AsyncClient, org: str
) -> None:
    headers = {**bearer("employer", sub=f"recruiter-{org}", org=org), "Idempotency-Key": "p-2"}
    first = await postings.post("/postings", json=posting_body(), headers=headers)
    assert first.status_code == 201, first.text

    other = await postings.post("/postings", json=posting_body(title="Tester"), headers=headers)

    assert "Idempotency-Key" in assert_problem(other, 422)["detail"]
    assert item_ids(await search(postings, org=org)) == [first.json()["posting_id"]]


async def test_idempotency_keys_are_per_employer(postings: httpx.AsyncClient, org: str) -> None:
    created = set()
    for recruiter in ("ana", "ben"):
        headers = {**bearer("employer", sub=f"{recruiter}-{org}", org=org), "Idempotency-Key": "k"}
        response = await postings.post("/postings", json=posting_body(), headers=headers)
        assert response.status_code == 201, response.text
        assert "idempotent-replayed" not in response.headers
        created.add(response.json()["posting_id"])
    assert len(created) == 2


# --- change (PATCH) -----------------------------------------------------------------------


async def test_patch_bumps_the_version_and_publishes_posting_updated(
    postings: httpx.AsyncClient, servers: Servers, org: str
) -> None:
    posting_id = (await create(postings, org))["posting_id"]

    response = await postings.patch(
        f"/postings/{posting_id}",
        json={"title": "Principal Backend Developer"},
        headers=if_match(org, '"1"'),
    )

    assert response.status_code == 200, response.text
    assert response.headers["etag"] == '"2"'
    changed = response.json()
    assert changed["version"] == 2
    assert changed["title"] == "Principal Backend Developer"
    assert changed["company"] == "Acme Corp"  # fields not named stay as they were
    fetched = await postings.get(f"/postings/{posting_id}", headers=bearer("candidate"))
    assert fetched.headers["etag"] == '"2"'
    assert fetched.json() == changed

    records = await read_until(
        servers.kafka_bootstrap, ["posting.updated"], lambda rs: bool(keyed(rs, posting_id))
    )
    event = POSTING_UPDATED.parse(keyed(records, posting_id)[0].value)
    assert event.subject == posting_id
    assert event.data.version == 2
    assert event.data.title == "Principal Backend Developer"


async def test_patch_with_unchanged_values_keeps_the_version_and_publishes_nothing(
    postings: httpx.AsyncClient, servers: Servers, org: str
) -> None:
    posting = await create(postings, org)
    url = f"/postings/{posting['posting_id']}"
    same = {**posting_body(), "skills": ["PYTHON", "kafka", "MongoDB", "Kubernetes"]}

    response = await postings.patch(url, json=same, headers=if_match(org, '"1"'))

    assert response.status_code == 200, response.text
    assert response.headers["etag"] == '"1"'
    assert response.json() == posting
    # A real change afterwards: its event follows any earlier one of this posting in order,
    # so once it is read, an event of the no-op would have been read too.
    changed = await postings.patch(
        url, json={"title": "Lead Developer"}, headers=if_match(org, "*")
    )
    assert changed.json()["version"] == 2
    records = await read_until(
        servers.kafka_bootstrap,
        ["posting.updated"],
        lambda rs: any(r.json()["data"]["version"] == 2 for r in keyed(rs, posting["posting_id"])),
    )
    versions = [r.json()["data"]["version"] for r in keyed(records, posting["posting_id"])]
    assert versions == [2]


async def test_patch_without_if_match_is_428(postings: httpx.AsyncClient, org: str) -> None:
    posting_id = (await create(postings, org))["posting_id"]

    response = await postings.patch(
        f"/postings/{posting_id}", json={"title": "Lead Developer"}, headers=employer(org)
    )

    assert_problem(response, 428)


async def test_patch_with_a_stale_etag_is_412_and_changes_nothing(
    postings: httpx.AsyncClient, org: str
) -> None:
    posting_id = (await create(postings, org))["posting_id"]
    url = f"/postings/{posting_id}"
    first = await postings.patch(
        url, json={"title": "Lead Developer"}, headers=if_match(org, '"1"')
    )
    assert first.status_code == 200, first.text

    stale = await postings.patch(
        url, json={"title": "Junior Developer"}, headers=if_match(org, '"1"')
    )

    assert_problem(stale, 412)
    fetched = await postings.get(url, headers=employer(org))
    assert fetched.json()["title"] == "Lead Developer"
    assert fetched.headers["etag"] == '"2"'


async def test_patch_with_if_match_star_changes_whatever_the_version(
    postings: httpx.AsyncClient, org: str
) -> None:
    posting_id = (await create(postings, org))["posting_id"]

    response = await postings.patch(
        f"/postings/{posting_id}", json={"workplace": "remote"}, headers=if_match(org, "*")
    )

    assert response.status_code == 200, response.text
    assert response.json()["workplace"] == "remote"
    assert response.json()["version"] == 2


@pytest.mark.parametrize(
    "caller",
    [
        pytest.param(lambda: bearer("employer", org=new_org()), id="another-org"),
        pytest.param(lambda: bearer("candidate"), id="candidate"),
        pytest.param(lambda: bearer("admin"), id="admin"),
    ],
)
async def test_only_the_owning_employer_may_patch(
    postings: httpx.AsyncClient, org: str, caller: Callable[[], dict[str, str]]
) -> None:
    posting_id = (await create(postings, org))["posting_id"]
    url = f"/postings/{posting_id}"

    response = await postings.patch(
        url, json={"title": "Lead Developer"}, headers={**caller(), "If-Match": '"1"'}
    )

    assert_problem(response, 403)
    assert (await postings.get(url, headers=employer(org))).json()["version"] == 1


@pytest.mark.parametrize("posting_id", [str(ObjectId()), "not-an-id"])
async def test_patch_of_an_unknown_posting_is_404(
    postings: httpx.AsyncClient, org: str, posting_id: str
) -> None:
    response = await postings.patch(
        f"/postings/{posting_id}", json={"title": "Lead Developer"}, headers=if_match(org, "*")
    )

    assert_problem(response, 404)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        pytest.param({"title": "x"}, "title", id="title-too-short"),
        pytest.param({"title": None}, "title", id="required-field-null"),
        pytest.param({"remote_ok": True}, "remote_ok", id="unknown-field"),
        pytest.param({"location": {"city": "Paris"}}, "location.country", id="partial-location"),
        pytest.param(
            {"salary": {"min": 9, "max": 1, "currency": "USD"}}, "salary", id="salary-min-above-max"
        ),
    ],
)
async def test_an_invalid_change_is_422_naming_the_field(
    postings: httpx.AsyncClient, org: str, changes: dict[str, Any], field: str
) -> None:
    posting_id = (await create(postings, org))["posting_id"]
    url = f"/postings/{posting_id}"

    response = await postings.patch(url, json=changes, headers=if_match(org, '"1"'))

    assert field in problem_fields(response)
    assert (await postings.get(url, headers=employer(org))).json()["version"] == 1


async def test_patch_salary_null_removes_the_salary(postings: httpx.AsyncClient, org: str) -> None:
    posting_id = (await create(postings, org))["posting_id"]

    response = await postings.patch(
        f"/postings/{posting_id}", json={"salary": None}, headers=if_match(org, '"1"')
    )

    assert response.status_code == 200, response.text
    assert response.json()["salary"] is None
    assert response.json()["version"] == 2
    assert item_ids(await search(postings, org=org, min_salary=0)) == []


async def test_patch_of_a_closed_posting_is_409(postings: httpx.AsyncClient, org: str) -> None:
    posting_id = (await create(postings, org))["posting_id"]
    url = f"/postings/{posting_id}"
    closed = await postings.post(f"{url}/close", json={"reason": "filled"}, headers=employer(org))
    assert closed.status_code == 200, closed.text

    response = await postings.patch(
        url, json={"title": "Lead Developer"}, headers=if_match(org, closed.headers["etag"])
    )

    assert_problem(response, 409)


async def test_concurrent_patches_with_one_etag_let_exactly_one_win(
    postings: httpx.AsyncClient, servers: Servers, org: str
) -> None:
    posting_id = (await create(postings, org))["posting_id"]
    url = f"/postings/{posting_id}"

    responses = await asyncio.gather(
        postings.patch(url, json={"title": "Lead Developer"}, headers=if_match(org, '"1"')),
        postings.patch(url, json={"title": "Principal Developer"}, headers=if_match(org, '"1"')),
    )

    assert sorted(response.status_code for response in responses) == [200, 412]
    [winner] = [response.json() for response in responses if response.status_code == 200]
    assert winner["version"] == 2
    fetched = await postings.get(url, headers=employer(org))
    assert fetched.json()["title"] == winner["title"]
    updates = await settled_events(servers, ["posting.updated"], posting_id, expected=1)
    assert [(r.json()["data"]["version"], r.json()["data"]["title"]) for r in updates] == [
        (2, winner["title"])
    ]


# --- close --------------------------------------------------------------------------------


async def test_close_closes_the_posting_and_publishes_posting_closed(
    postings: httpx.AsyncClient, servers: Servers, org: str
) -> None:
    posting_id = (await create(postings, org))["posting_id"]
    url = f"/postings/{posting_id}"

    response = await postings.post(f"{url}/close", json={"reason": "filled"}, headers=employer(org))

    assert response.status_code == 200, response.text
    closed = response.json()
    assert closed["status"] == "closed"
    assert closed["version"] == 2
    assert closed["close_reason"] == "filled"
    assert closed["closed_at"] is not None
    assert response.headers["etag"] == '"2"'
    assert (await postings.get(url, headers=bearer("candidate"))).json() == closed

    records = await read_until(
        servers.kafka_bootstrap, ["posting.closed"], lambda rs: bool(keyed(rs, posting_id))
    )
    event = POSTING_CLOSED.parse(keyed(records, posting_id)[0].value)
    assert event.subject == posting_id
    assert event.data.reason == "filled"
    assert event.data.version == 2
    assert event.data.org == org


async def test_closing_a_closed_posting_is_409(postings: httpx.AsyncClient, org: str) -> None:
    posting_id = (await create(postings, org))["posting_id"]
    url = f"/postings/{posting_id}/close"
    first = await postings.post(url, json={"reason": "filled"}, headers=employer(org))
    assert first.status_code == 200, first.text

    again = await postings.post(url, json={"reason": "cancelled"}, headers=employer(org))

    assert_problem(again, 409)
    fetched = await postings.get(f"/postings/{posting_id}", headers=employer(org))
    assert fetched.json()["close_reason"] == "filled"
    assert fetched.json()["version"] == 2


@pytest.mark.parametrize(
    "caller",
    [
        pytest.param(lambda: bearer("employer", org=new_org()), id="another-org"),
        pytest.param(lambda: bearer("candidate"), id="candidate"),
    ],
)
async def test_only_the_owning_employer_or_an_admin_may_close(
    postings: httpx.AsyncClient, org: str, caller: Callable[[], dict[str, str]]
) -> None:
    posting_id = (await create(postings, org))["posting_id"]

    response = await postings.post(
        f"/postings/{posting_id}/close", json={"reason": "cancelled"}, headers=caller()
    )

    assert_problem(response, 403)
    fetched = await postings.get(f"/postings/{posting_id}", headers=employer(org))
    assert fetched.json()["status"] == "open"


async def test_an_admin_may_close_any_posting(postings: httpx.AsyncClient, org: str) -> None:
    posting_id = (await create(postings, org))["posting_id"]

    response = await postings.post(
        f"/postings/{posting_id}/close", json={"reason": "expired"}, headers=bearer("admin")
    )

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "closed"
    assert response.json()["close_reason"] == "expired"
    assert response.json()["org"] == org


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"reason": "bored"}, "reason", id="unknown-reason"),
        pytest.param({}, "reason", id="no-reason"),
        pytest.param({"reason": "filled", "note": "hired Ana"}, "note", id="unknown-field"),
    ],
)
async def test_close_with_an_invalid_body_is_422(
    postings: httpx.AsyncClient, org: str, body: dict[str, Any], field: str
) -> None:
    posting_id = (await create(postings, org))["posting_id"]

    response = await postings.post(
        f"/postings/{posting_id}/close", json=body, headers=employer(org)
    )

    assert field in problem_fields(response)


@pytest.mark.parametrize("posting_id", [str(ObjectId()), "not-an-id"])
async def test_closing_an_unknown_posting_is_404(
    postings: httpx.AsyncClient, org: str, posting_id: str
) -> None:
    response = await postings.post(
        f"/postings/{posting_id}/close", json={"reason": "filled"}, headers=employer(org)
    )

    assert_problem(response, 404)


# --- the whole life -----------------------------------------------------------------------


async def test_a_postings_events_carry_versions_1_2_3_each_exactly_once(
    postings: httpx.AsyncClient, servers: Servers, org: str
) -> None:
    posting_id = (await create(postings, org))["posting_id"]
    url = f"/postings/{posting_id}"
    changed = await postings.patch(url, json={"seniority": "staff"}, headers=if_match(org, '"1"'))
    assert changed.status_code == 200, changed.text
    closed = await postings.post(f"{url}/close", json={"reason": "filled"}, headers=employer(org))
    assert closed.status_code == 200, closed.text

    records = await settled_events(servers, POSTING_TOPICS, posting_id, expected=3)

    by_version = sorted(records, key=lambda r: int(r.json()["data"]["version"]))
    assert [(r.topic, r.json()["data"]["version"]) for r in by_version] == [
        ("posting.created", 1),
        ("posting.updated", 2),
        ("posting.closed", 3),
    ]
    assert all(r.json()["subject"] == posting_id for r in records)
    assert len({r.json()["id"] for r in records}) == 3
    assert by_version[1].json()["data"]["seniority"] == "staff"
    assert by_version[2].json()["data"]["reason"] == "filled"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/postings", None),
        ("GET", "/postings/{id}", None),
        ("PATCH", "/postings/{id}", {"title": "Lead Developer"}),
        ("POST", "/postings/{id}/close", {"reason": "filled"}),
    ],
)
async def test_every_route_needs_a_token(
    postings: httpx.AsyncClient, org: str, method: str, path: str, body: dict[str, Any] | None
) -> None:
    posting_id = (await create(postings, org))["posting_id"]

    response = await postings.request(
        method, path.format(id=posting_id), json=body, headers={"If-Match": "*"}
    )

    assert_problem(response, 401)

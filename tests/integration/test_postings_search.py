"""Searching postings (`GET /postings`) on the real database: the store's queries and indexes
for every filter, newest first, cursor pages that hold while postings are added, and the 422s
of a search the service cannot run.

The catalogue's org is read, never written, by the tests that share it; every other test works
under an org of its own, so postings made by other tests never show up.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from bson import ObjectId

from tests.conftest import unique_db
from tests.support.http import assert_problem, problem_fields
from tests.support.postings import (
    CATALOGUE,
    Catalogue,
    close,
    create,
    create_id,
    cursor_at,
    employer,
    if_match,
    item_ids,
    new_org,
    publish_catalogue,
    running_postings,
    search,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def postings(base_env: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    async for client in running_postings(base_env, unique_db("postings")):
        yield client


@pytest.fixture(scope="module")
async def catalogue(postings: httpx.AsyncClient) -> Catalogue:
    return await publish_catalogue(postings)


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
    postings: httpx.AsyncClient, catalogue: Catalogue
) -> None:
    org = new_org()
    ours = await create_id(postings, org, title="Backend Developer")

    assert item_ids(await search(postings, org=org)) == [ours]
    assert catalogue.names(await search(postings, org=catalogue.org)) == set(CATALOGUE)


async def test_closed_postings_are_listed_only_with_status_closed(
    postings: httpx.AsyncClient,
) -> None:
    org = new_org()
    still_open = await create_id(postings, org)
    closed = await create_id(postings, org, title="Backend Developer (filled)")
    response = await close(postings, closed, employer(org))
    assert response.status_code == 200, response.text

    assert item_ids(await search(postings, org=org)) == [still_open]
    assert item_ids(await search(postings, org=org, status="closed")) == [closed]


async def test_search_finds_a_posting_by_its_changed_fields(postings: httpx.AsyncClient) -> None:
    org = new_org()
    posting_id = await create_id(postings, org)
    response = await postings.patch(
        f"/postings/{posting_id}",
        json={"title": "Senior Rust Developer", "skills": ["Rust", "Tokio"]},
        headers=if_match(org, '"1"'),
    )
    assert response.status_code == 200, response.text

    assert item_ids(await search(postings, org=org, q="rust")) == [posting_id]
    assert item_ids(await search(postings, org=org, skills="tokio")) == [posting_id]
    assert item_ids(await search(postings, org=org, skills="kafka")) == []


async def test_a_removed_salary_no_longer_matches_min_salary(postings: httpx.AsyncClient) -> None:
    org = new_org()
    posting_id = await create_id(postings, org)
    assert item_ids(await search(postings, org=org, min_salary=0)) == [posting_id]

    response = await postings.patch(
        f"/postings/{posting_id}", json={"salary": None}, headers=if_match(org, '"1"')
    )

    assert response.status_code == 200, response.text
    assert response.json()["salary"] is None
    assert response.json()["version"] == 2
    assert item_ids(await search(postings, org=org, min_salary=0)) == []


async def test_limit_pages_through_every_posting_once(postings: httpx.AsyncClient) -> None:
    org = new_org()
    created = [await create_id(postings, org, title=f"Backend Developer {n}") for n in range(5)]

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
    assert [posting_id for page in pages for posting_id in page] == list(reversed(created))


async def test_pages_stay_consistent_while_postings_are_added(
    postings: httpx.AsyncClient,
) -> None:
    org = new_org()
    before = [await create_id(postings, org, title=f"Backend Developer {n}") for n in range(5)]

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

    assert seen == list(reversed(before))


@pytest.mark.parametrize(
    "cursor",
    [
        pytest.param("not-a-cursor", id="garbage"),
        pytest.param(cursor_at({"t": 1_790_000_000_000, "id": "nope"}), id="bad-id"),
        pytest.param(cursor_at({"id": str(ObjectId())}), id="no-time"),
        pytest.param(cursor_at({"t": 10**20, "id": str(ObjectId())}), id="time-out-of-range"),
    ],
)
async def test_a_cursor_the_service_did_not_make_is_422(
    postings: httpx.AsyncClient, cursor: str
) -> None:
    problem = assert_problem(await search(postings, org=new_org(), cursor=cursor), 422)
    assert "cursor" in problem["detail"]


@pytest.mark.parametrize("limit", [0, 101])
async def test_limit_outside_1_to_100_is_422(postings: httpx.AsyncClient, limit: int) -> None:
    assert problem_fields(await search(postings, org=new_org(), limit=limit)) == {"limit"}


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
    postings: httpx.AsyncClient, name: str, value: str | int
) -> None:
    assert problem_fields(await search(postings, org=new_org(), **{name: value})) == {name}


async def test_a_search_the_domain_refuses_is_422(postings: httpx.AsyncClient) -> None:
    too_many = ",".join(f"skill{n}" for n in range(31))  # above MAX_SKILLS

    problem = assert_problem(await search(postings, skills=too_many), 422)

    assert problem["detail"].startswith("invalid search")

"""Hostile input against a real service (postings, in process, on the real servers):
oversized and deep bodies, MongoDB operators in bodies and query strings, path tricks, and
the write rate limit."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from hirestream.postings.app import PostingsSettings, create_app
from tests.conftest import client_for, settings_for, unique_db
from tests.support.factories import posting_body

pytestmark = pytest.mark.integration

Auth = Callable[..., dict[str, str]]
WRITES_PER_MINUTE = 8


@pytest.fixture(scope="module")
async def postings(base_env: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    settings = settings_for(
        PostingsSettings,
        base_env,
        mongodb_database=unique_db("guard"),
        max_body_bytes=64 * 1024,
        rate_limit_writes=f"{WRITES_PER_MINUTE}/minute",
    )
    async for client in client_for(create_app(settings)):
        yield client


def problem_of(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, object] = response.json()
    assert body["status"] == status
    return body


async def test_an_oversized_body_is_413(postings: httpx.AsyncClient, auth: Auth) -> None:
    body = posting_body(description="x" * (70 * 1024))
    response = await postings.post("/postings", json=body, headers=auth("employer", org="g1"))
    problem_of(response, 413)


async def test_an_oversized_body_without_content_length_is_413(
    postings: httpx.AsyncClient, auth: Auth
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(100):
            yield b" " * 1024

    headers = {**auth("employer", org="g1"), "Content-Type": "application/json"}
    response = await postings.post("/postings", content=chunks(), headers=headers)
    problem_of(response, 413)


async def test_deep_json_is_refused_before_parsing(postings: httpx.AsyncClient, auth: Auth) -> None:
    deep = b'{"title": ' + b"[" * 20_000 + b"]" * 20_000 + b"}"
    headers = {**auth("employer", org="g1"), "Content-Type": "application/json"}
    response = await postings.post("/postings", content=deep, headers=headers)
    assert "nested" in str(problem_of(response, 422)["detail"])


@pytest.mark.parametrize(
    "changes",
    [
        {"title": {"$ne": ""}},
        {"location": {"city": {"$gt": ""}, "country": "US"}},
        {"$where": "sleep(100)"},
        {"skills": [{"$regex": ".*"}]},
    ],
)
async def test_operators_in_bodies_are_refused(
    postings: httpx.AsyncClient, auth: Auth, changes: dict[str, object]
) -> None:
    response = await postings.post(
        "/postings", json=posting_body(**changes), headers=auth("employer", org="g1")
    )
    problem_of(response, 422)


@pytest.mark.parametrize(
    "query",
    ["org[$ne]=x", "status[$ne]=closed", "$where=1", "org=x&skills[]=a"],
)
async def test_operators_in_query_strings_are_refused(
    postings: httpx.AsyncClient, auth: Auth, query: str
) -> None:
    response = await postings.get(f"/postings?{query}", headers=auth("candidate"))
    problem_of(response, 422)


async def test_an_operator_as_a_query_value_is_only_a_string(
    postings: httpx.AsyncClient, auth: Auth
) -> None:
    response = await postings.get(
        "/postings?org=%7B%22%24ne%22%3A%22%22%7D", headers=auth("candidate")
    )
    assert response.status_code == 200
    assert response.json()["items"] == []  # no org is literally named {"$ne":""}


@pytest.mark.parametrize(
    "path",
    [
        "/postings/..%2F..%2Fadmin",
        "/postings/%00",
        "/postings/" + "a" * 5000,
        "/postings/%2E%2E/healthz",
    ],
)
async def test_path_tricks_find_nothing(postings: httpx.AsyncClient, auth: Auth, path: str) -> None:
    response = await postings.get(path, headers=auth("candidate"))
    assert response.status_code in {404, 422}, response.text


async def test_writes_are_rate_limited_per_client(postings: httpx.AsyncClient, auth: Auth) -> None:
    limited = auth("employer", sub="busy-recruiter", org="g2")
    statuses = []
    for _ in range(WRITES_PER_MINUTE + 2):
        response = await postings.post("/postings", json=posting_body(), headers=limited)
        statuses.append(response.status_code)
    assert statuses[:WRITES_PER_MINUTE] == [201] * WRITES_PER_MINUTE
    assert statuses[WRITES_PER_MINUTE:] == [429, 429]
    refused = await postings.post("/postings", json=posting_body(), headers=limited)
    problem_of(refused, 429)
    assert 1 <= int(refused.headers["retry-after"]) <= 60

    other = auth("employer", sub="calm-recruiter", org="g2")  # another client is not limited
    assert (await postings.post("/postings", json=posting_body(), headers=other)).status_code == 201
    reads = [await postings.get("/postings", headers=limited) for _ in range(3)]
    assert {r.status_code for r in reads} == {200}  # reads are not limited

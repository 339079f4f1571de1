"""A posting's life through the postings API, on the real broker and database.

Change with If-Match and close: the status and problem document of every answer each route can
give, the ETag, optimistic concurrency on the real database, and the `posting.*` events each
step publishes on Kafka, each exactly once. The rules behind them are unit-tested on in-memory
stores (tests/unit/postings/). Each test works under an org of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from bson import ObjectId

from hirestream.shared.events.postings import POSTING_CLOSED, POSTING_UPDATED
from tests.conftest import bearer, unique_db
from tests.support.http import assert_problem, problem_fields
from tests.support.postings import (
    CLOSED,
    POSTING_TOPICS,
    UPDATED,
    close,
    create_id,
    employer,
    events_of,
    fetch,
    if_match,
    new_org,
    running_postings,
    settled_events,
)
from tests.support.servers import Servers

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def postings(base_env: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    async for client in running_postings(base_env, unique_db("postings")):
        yield client


# --- change (PATCH) -----------------------------------------------------------------------


async def test_patch_bumps_the_version_and_publishes_posting_updated(
    postings: httpx.AsyncClient, servers: Servers
) -> None:
    org = new_org()
    posting_id = await create_id(postings, org)

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
    fetched = await fetch(postings, posting_id)
    assert fetched.headers["etag"] == '"2"'
    assert fetched.json() == changed

    [record, *_] = await events_of(servers, UPDATED, posting_id)
    event = POSTING_UPDATED.parse(record.value)
    assert event.subject == posting_id
    assert event.data.version == 2
    assert event.data.title == "Principal Backend Developer"


async def test_patch_without_if_match_is_428(postings: httpx.AsyncClient) -> None:
    org = new_org()
    posting_id = await create_id(postings, org)

    response = await postings.patch(
        f"/postings/{posting_id}", json={"title": "Lead Developer"}, headers=employer(org)
    )

    assert_problem(response, 428)


async def test_patch_with_a_stale_etag_is_412_and_changes_nothing(
    postings: httpx.AsyncClient,
) -> None:
    org = new_org()
    posting_id = await create_id(postings, org)
    url = f"/postings/{posting_id}"
    first = await postings.patch(
        url, json={"title": "Lead Developer"}, headers=if_match(org, '"1"')
    )
    assert first.status_code == 200, first.text

    stale = await postings.patch(
        url, json={"title": "Junior Developer"}, headers=if_match(org, '"1"')
    )

    assert_problem(stale, 412)
    fetched = await fetch(postings, posting_id)
    assert fetched.json()["title"] == "Lead Developer"
    assert fetched.headers["etag"] == '"2"'


@pytest.mark.parametrize(
    "tag",
    [
        pytest.param(b'W/"1"', id="weak"),
        pytest.param(b'"\xb2"', id="not-ascii-digits"),
        pytest.param(b'"' + b"9" * 5000 + b'"', id="too-many-digits"),
    ],
)
async def test_an_if_match_naming_no_version_of_ours_is_412(
    postings: httpx.AsyncClient, tag: bytes
) -> None:
    org = new_org()
    posting_id = await create_id(postings, org)
    headers = {name.encode(): value.encode() for name, value in employer(org).items()}

    response = await postings.patch(
        f"/postings/{posting_id}",
        json={"title": "Lead Developer"},
        headers={**headers, b"If-Match": tag},  # as bytes: a header is not always ASCII
    )

    assert_problem(response, 412)


@pytest.mark.parametrize(
    "caller",
    [
        pytest.param(lambda: bearer("employer", org=new_org()), id="another-org"),
        pytest.param(lambda: bearer("candidate"), id="candidate"),
        pytest.param(lambda: bearer("admin"), id="admin"),
    ],
)
async def test_only_the_owning_employer_may_patch(
    postings: httpx.AsyncClient, caller: Callable[[], dict[str, str]]
) -> None:
    posting_id = await create_id(postings, new_org())

    response = await postings.patch(
        f"/postings/{posting_id}",
        json={"title": "Lead Developer"},
        headers={**caller(), "If-Match": '"1"'},
    )

    assert_problem(response, 403)
    assert (await fetch(postings, posting_id)).json()["version"] == 1


@pytest.mark.parametrize("posting_id", [str(ObjectId()), "not-an-id"])
async def test_patch_of_an_unknown_posting_is_404(
    postings: httpx.AsyncClient, posting_id: str
) -> None:
    response = await postings.patch(
        f"/postings/{posting_id}",
        json={"title": "Lead Developer"},
        headers=if_match(new_org(), "*"),
    )

    assert_problem(response, 404)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        pytest.param({"remote_ok": True}, "remote_ok", id="unknown-field"),
        pytest.param({"location": {"city": "Paris"}}, "location.country", id="partial-location"),
    ],
)
async def test_an_invalid_change_is_422_naming_the_field(
    postings: httpx.AsyncClient, changes: dict[str, Any], field: str
) -> None:
    org = new_org()
    posting_id = await create_id(postings, org)

    response = await postings.patch(
        f"/postings/{posting_id}", json=changes, headers=if_match(org, '"1"')
    )

    assert field in problem_fields(response)
    assert (await fetch(postings, posting_id)).json()["version"] == 1


async def test_patch_of_a_closed_posting_is_409(postings: httpx.AsyncClient) -> None:
    org = new_org()
    posting_id = await create_id(postings, org)
    closed = await close(postings, posting_id, employer(org))
    assert closed.status_code == 200, closed.text

    response = await postings.patch(
        f"/postings/{posting_id}",
        json={"title": "Lead Developer"},
        headers=if_match(org, closed.headers["etag"]),
    )

    assert_problem(response, 409)


async def test_concurrent_patches_with_one_etag_let_exactly_one_win(
    postings: httpx.AsyncClient, servers: Servers
) -> None:
    org = new_org()
    posting_id = await create_id(postings, org)
    url = f"/postings/{posting_id}"

    responses = await asyncio.gather(
        postings.patch(url, json={"title": "Lead Developer"}, headers=if_match(org, '"1"')),
        postings.patch(url, json={"title": "Principal Developer"}, headers=if_match(org, '"1"')),
    )

    assert sorted(response.status_code for response in responses) == [200, 412]
    [winner] = [response.json() for response in responses if response.status_code == 200]
    assert winner["version"] == 2
    assert (await fetch(postings, posting_id)).json()["title"] == winner["title"]
    updates = await settled_events(servers, [UPDATED], posting_id, expected=1)
    assert [(r.json()["data"]["version"], r.json()["data"]["title"]) for r in updates] == [
        (2, winner["title"])
    ]


# --- close --------------------------------------------------------------------------------


async def test_close_closes_the_posting_and_publishes_posting_closed(
    postings: httpx.AsyncClient, servers: Servers
) -> None:
    org = new_org()
    posting_id = await create_id(postings, org)

    response = await close(postings, posting_id, employer(org))

    assert response.status_code == 200, response.text
    closed = response.json()
    assert closed["status"] == "closed"
    assert closed["version"] == 2
    assert closed["close_reason"] == "filled"
    assert closed["closed_at"] is not None
    assert response.headers["etag"] == '"2"'
    assert (await fetch(postings, posting_id)).json() == closed

    [record, *_] = await events_of(servers, CLOSED, posting_id)
    event = POSTING_CLOSED.parse(record.value)
    assert event.subject == posting_id
    assert event.data.reason == "filled"
    assert event.data.version == 2
    assert event.data.org == org


async def test_closing_a_closed_posting_is_409(postings: httpx.AsyncClient) -> None:
    org = new_org()
    posting_id = await create_id(postings, org)
    first = await close(postings, posting_id, employer(org))
    assert first.status_code == 200, first.text

    again = await close(postings, posting_id, employer(org), reason="cancelled")

    assert_problem(again, 409)
    fetched = (await fetch(postings, posting_id)).json()
    assert (fetched["close_reason"], fetched["version"]) == ("filled", 2)


@pytest.mark.parametrize(
    "caller",
    [
        pytest.param(lambda: bearer("employer", org=new_org()), id="another-org"),
        pytest.param(lambda: bearer("candidate"), id="candidate"),
    ],
)
async def test_only_the_owning_employer_or_an_admin_may_close(
    postings: httpx.AsyncClient, caller: Callable[[], dict[str, str]]
) -> None:
    posting_id = await create_id(postings, new_org())

    response = await close(postings, posting_id, caller(), reason="cancelled")

    assert_problem(response, 403)
    assert (await fetch(postings, posting_id)).json()["status"] == "open"


async def test_an_admin_may_close_any_posting(postings: httpx.AsyncClient) -> None:
    org = new_org()
    posting_id = await create_id(postings, org)

    response = await close(postings, posting_id, bearer("admin"), reason="expired")

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
    postings: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    org = new_org()
    posting_id = await create_id(postings, org)

    response = await postings.post(
        f"/postings/{posting_id}/close", json=body, headers=employer(org)
    )

    assert field in problem_fields(response)


@pytest.mark.parametrize("posting_id", [str(ObjectId()), "not-an-id"])
async def test_closing_an_unknown_posting_is_404(
    postings: httpx.AsyncClient, posting_id: str
) -> None:
    response = await close(postings, posting_id, employer(new_org()))

    assert_problem(response, 404)


# --- the whole life -----------------------------------------------------------------------


async def test_a_postings_events_carry_versions_1_2_3_each_exactly_once(
    postings: httpx.AsyncClient, servers: Servers
) -> None:
    org = new_org()
    posting_id = await create_id(postings, org)
    changed = await postings.patch(
        f"/postings/{posting_id}", json={"seniority": "staff"}, headers=if_match(org, '"1"')
    )
    assert changed.status_code == 200, changed.text
    closed = await close(postings, posting_id, employer(org))
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

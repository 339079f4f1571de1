"""Posting expiry through the postings API, on the real broker and database.

The end a posting gets (`expires_at`, defaulted and bounded by settings), the 422 that names the
field when an employer asks for one out of bounds, moving it by PATCH, and the expiry job: a
posting past its end closes itself, with one `posting.closed` (reason `expired`, its title and
contact address) and is closed when read. Two replicas running the job at once:
tests/e2e/test_posting_expiry.py. The rules: tests/unit/postings/test_expiry.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import httpx
import pytest

from hirestream.shared.events.postings import POSTING_CLOSED, POSTING_CREATED, POSTING_UPDATED
from hirestream.shared.events.types import utc_now
from tests.conftest import bearer, unique_db
from tests.support.factories import posting_body
from tests.support.http import assert_problem, problem_fields
from tests.support.polling import eventually
from tests.support.postings import (
    CLOSED,
    CREATED,
    UPDATED,
    create,
    create_id,
    employer,
    events_of,
    fetch,
    if_match,
    new_org,
    running_postings,
    settled_events,
    ttl_days,
)
from tests.support.servers import Servers

pytestmark = pytest.mark.integration

DAY = timedelta(days=1)
# Postings of the expiring service end this long after they are published.
SHORT_LIFE_S = 2.0


@pytest.fixture(scope="module")
async def postings(base_env: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    """The service with the default lifetimes (30 days, at most 90)."""
    async for client in running_postings(base_env, unique_db("postings")):
        yield client


@pytest.fixture(scope="module")
async def expiring(base_env: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    """The service on a database of its own, publishing postings that end in SHORT_LIFE_S
    and looking for postings past their end twice a second."""
    async for client in running_postings(
        base_env,
        unique_db("postings"),
        posting_default_ttl_days=ttl_days(SHORT_LIFE_S),
        expiry_sweep_interval_s=0.5,
    ):
        yield client


def instant(value: str) -> datetime:
    return datetime.fromisoformat(value)


# --- the end of a posting -------------------------------------------------------------------


async def test_a_posting_ends_30_days_after_it_is_published_by_default(
    postings: httpx.AsyncClient, servers: Servers
) -> None:
    posting = await create(postings, new_org())

    assert instant(posting["expires_at"]) == instant(posting["created_at"]) + 30 * DAY
    [record, *_] = await events_of(servers, CREATED, posting["posting_id"])
    assert POSTING_CREATED.parse(record.value).data.expires_at == instant(posting["expires_at"])


async def test_an_end_the_employer_names_is_kept(postings: httpx.AsyncClient) -> None:
    end = (utc_now() + 10 * DAY).isoformat()

    posting = await create(postings, new_org(), expires_at=end)

    assert instant(posting["expires_at"]) == instant(end)
    assert (await fetch(postings, posting["posting_id"])).json()["expires_at"] == posting[
        "expires_at"
    ]


@pytest.mark.parametrize(
    ("offset", "message"),
    [
        pytest.param(-DAY, "in the future", id="past"),
        pytest.param(91 * DAY, "at most 90 days ahead", id="beyond-the-longest"),
    ],
)
async def test_an_end_out_of_bounds_is_422_naming_the_field(
    postings: httpx.AsyncClient, offset: timedelta, message: str
) -> None:
    response = await postings.post(
        "/postings",
        json=posting_body(expires_at=(utc_now() + offset).isoformat()),
        headers=employer(new_org()),
    )

    problem = assert_problem(response, 422)
    assert problem["errors"] == [
        {"field": "expires_at", "message": f"expires_at must be {message}"}
    ]


async def test_an_end_without_a_time_zone_is_422(postings: httpx.AsyncClient) -> None:
    response = await postings.post(
        "/postings",
        json=posting_body(expires_at="2026-12-31T10:00:00"),
        headers=employer(new_org()),
    )
    assert problem_fields(response) == {"expires_at"}


async def test_patch_extends_an_open_posting_and_posting_updated_carries_the_end(
    postings: httpx.AsyncClient, servers: Servers
) -> None:
    org = new_org()
    posting_id = await create_id(postings, org)
    end = (utc_now() + 80 * DAY).isoformat()

    response = await postings.patch(
        f"/postings/{posting_id}", json={"expires_at": end}, headers=if_match(org, '"1"')
    )

    assert response.status_code == 200, response.text
    assert (response.json()["version"], instant(response.json()["expires_at"])) == (2, instant(end))
    [record, *_] = await events_of(servers, UPDATED, posting_id)
    assert POSTING_UPDATED.parse(record.value).data.expires_at == instant(end)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"expires_at": "past"}, "expires_at", id="past"),
        pytest.param({"expires_at": "too-far"}, "expires_at", id="beyond-the-longest"),
        pytest.param({"expires_at": None}, "expires_at", id="removed"),
    ],
)
async def test_patch_cannot_move_the_end_out_of_bounds(
    postings: httpx.AsyncClient, body: dict[str, str | None], field: str
) -> None:
    org = new_org()
    posting_id = await create_id(postings, org)
    ends = {"past": utc_now() - DAY, "too-far": utc_now() + 91 * DAY}
    value = body["expires_at"]
    sent = {"expires_at": ends[value].isoformat() if value is not None else None}

    response = await postings.patch(
        f"/postings/{posting_id}", json=sent, headers=if_match(org, '"1"')
    )

    assert problem_fields(response) == {field}
    assert (await fetch(postings, posting_id)).headers["etag"] == '"1"'


# --- the expiry job -------------------------------------------------------------------------


async def test_a_posting_past_its_end_closes_itself_once(
    expiring: httpx.AsyncClient, servers: Servers
) -> None:
    org = new_org()
    posting = await create(expiring, org, contact_email="jobs@acme.example")
    posting_id = posting["posting_id"]
    assert instant(posting["expires_at"]) == instant(posting["created_at"]) + timedelta(
        seconds=SHORT_LIFE_S
    )

    async def closed() -> dict[str, object] | None:
        found: dict[str, object] = (await fetch(expiring, posting_id)).json()
        return found if found["status"] == "closed" else None

    stored = await eventually(closed, timeout_s=30)

    assert (stored["close_reason"], stored["version"]) == ("expired", 2)
    [record] = await settled_events(servers, [CLOSED], posting_id, expected=1)
    event = POSTING_CLOSED.parse(record.value)
    assert (event.data.reason, event.data.version) == ("expired", 2)
    assert (event.data.title, event.data.contact_email) == (
        "Senior Backend Developer",
        "jobs@acme.example",
    )
    # Closed for good: no more changes, and no longer shown to job boards.
    patched = await expiring.patch(
        f"/postings/{posting_id}",
        json={"expires_at": (utc_now() + DAY).isoformat()},
        headers=if_match(org, '"2"'),
    )
    assert_problem(patched, 409)
    as_job_posting = await expiring.get(
        f"/postings/{posting_id}",
        headers={**bearer("candidate"), "Accept": "application/ld+json"},
    )
    assert_problem(as_job_posting, 410)


async def test_a_posting_shortened_by_patch_closes_itself_and_a_later_end_stays_open(
    expiring: httpx.AsyncClient, servers: Servers
) -> None:
    org = new_org()
    shortened = await create_id(expiring, org, expires_at=(utc_now() + DAY).isoformat())
    running = await create_id(expiring, org, expires_at=(utc_now() + DAY).isoformat())

    response = await expiring.patch(
        f"/postings/{shortened}",
        json={"expires_at": (utc_now() + timedelta(seconds=SHORT_LIFE_S)).isoformat()},
        headers=if_match(org, '"1"'),
    )
    assert response.status_code == 200, response.text

    [record] = await settled_events(servers, [CLOSED], shortened, expected=1)
    assert POSTING_CLOSED.parse(record.value).data.version == 3
    assert (await fetch(expiring, shortened)).json()["close_reason"] == "expired"
    # The job has run past the shortened end; the posting whose end is a day away is untouched.
    still = (await fetch(expiring, running)).json()
    assert (still["status"], still["version"]) == ("open", 1)

"""The postings service in process, on the real broker and database: publishing a posting
(its headers, its `posting.created` on Kafka and the outbox emptied after it), Idempotency-Key
retries on the real unique index, reading one posting, tokens and roles, and the operational
endpoints. Searching, changing and closing have modules of their own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from bson import ObjectId
from pymongo import AsyncMongoClient

from hirestream.shared.events.postings import POSTING_CREATED
from tests.conftest import unique_db
from tests.support.factories import posting_body
from tests.support.http import assert_problem, problem_fields
from tests.support.kafka import keyed, read_until
from tests.support.polling import eventually
from tests.support.postings import (
    CREATED,
    create_id,
    item_ids,
    new_org,
    recruiter,
    running_postings,
    search,
    settled_events,
)
from tests.support.servers import Servers

pytestmark = pytest.mark.integration

Auth = Callable[..., dict[str, str]]


@pytest.fixture(scope="module")
def postings_db() -> str:
    return unique_db("postings")


@pytest.fixture(scope="module")
async def postings(base_env: dict[str, str], postings_db: str) -> AsyncIterator[httpx.AsyncClient]:
    async for client in running_postings(base_env, postings_db):
        yield client


async def test_create_then_get(postings: httpx.AsyncClient, auth: Auth) -> None:
    created = await postings.post(
        "/postings", json=posting_body(), headers=auth("employer", org="acme")
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["status"] == "open"
    assert body["version"] == 1
    assert body["org"] == "acme"
    assert body["skills"] == ["python", "kafka", "mongodb", "kubernetes"]
    assert created.headers["location"] == f"/postings/{body['posting_id']}"
    assert created.headers["etag"] == '"1"'
    assert "idempotent-replayed" not in created.headers
    assert "outbox" not in body

    fetched = await postings.get(
        f"/postings/{body['posting_id']}", headers=auth("candidate", sub="c1")
    )
    assert fetched.status_code == 200
    assert fetched.json() == body
    assert fetched.headers["etag"] == '"1"'


async def test_posting_created_reaches_the_topic_once_and_the_outbox_empties(
    postings: httpx.AsyncClient,
    auth: Auth,
    servers: Servers,
    mongo: AsyncMongoClient[dict[str, Any]],
    postings_db: str,
) -> None:
    created = await postings.post(
        "/postings",
        json=posting_body(title="Staff Platform Engineer"),
        headers={**auth("employer", org="globex"), "X-Request-ID": "req-it-1"},
    )
    assert created.status_code == 201
    posting_id = created.json()["posting_id"]

    await read_until(servers.kafka_bootstrap, [CREATED], lambda rs: len(keyed(rs, posting_id)) >= 1)
    # Give a duplicate (there must be none) the time to arrive, then read everything again.
    records = await read_until(servers.kafka_bootstrap, [CREATED], lambda rs: False, timeout_s=3)
    ours = keyed(records, posting_id)
    assert len(ours) == 1
    event = POSTING_CREATED.parse(ours[0].value)
    assert ours[0].headers["content-type"].startswith("application/cloudevents+json")
    assert event.subject == posting_id
    assert event.source == "hirestream/postings"
    assert event.correlationid == "req-it-1"
    assert event.data.title == "Staff Platform Engineer"
    assert event.data.org == "globex"
    assert event.data.version == 1

    collection = mongo[postings_db]["postings"]
    document = await collection.find_one({"_id": ObjectId(posting_id)})
    assert document is not None
    assert document["outbox"] == []

    async def due_time_cleared() -> bool | None:
        # The inline relay leaves it; the sweep clears it once the grace period has passed.
        found = await collection.find_one({"_id": ObjectId(posting_id)})
        return True if found is not None and found["outbox_due_at"] is None else None

    assert await eventually(due_time_cleared, timeout_s=30, every_s=0.5)


# --- Idempotency-Key ----------------------------------------------------------------------


async def test_a_retry_with_the_same_idempotency_key_replays_the_first_posting(
    postings: httpx.AsyncClient, servers: Servers
) -> None:
    org = new_org()
    headers = recruiter(org, "ana", "p-1")
    first = await postings.post("/postings", json=posting_body(), headers=headers)
    assert first.status_code == 201, first.text

    # At once: the real unique _id decides, not a read before the write.
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
    records = await settled_events(servers, [CREATED], posting_id, expected=1)
    assert len(records) == 1
    assert item_ids(await search(postings, org=org)) == [posting_id]


async def test_an_idempotency_key_reused_for_another_posting_is_422(
    postings: httpx.AsyncClient,
) -> None:
    org = new_org()
    headers = recruiter(org, "ana", "p-2")
    first = await postings.post("/postings", json=posting_body(), headers=headers)
    assert first.status_code == 201, first.text

    other = await postings.post("/postings", json=posting_body(title="Tester"), headers=headers)

    assert problem_fields(other) == {"Idempotency-Key"}
    assert item_ids(await search(postings, org=org)) == [first.json()["posting_id"]]


async def test_idempotency_keys_are_per_employer_user(postings: httpx.AsyncClient) -> None:
    org = new_org()
    created = set()
    for name in ("ana", "ben"):
        headers = recruiter(org, name, "k")
        response = await postings.post("/postings", json=posting_body(), headers=headers)
        assert response.status_code == 201, response.text
        assert "idempotent-replayed" not in response.headers
        created.add(response.json()["posting_id"])
    assert len(created) == 2


# --- reading, tokens and roles --------------------------------------------------------------


async def test_unknown_and_malformed_ids_are_404(postings: httpx.AsyncClient, auth: Auth) -> None:
    for posting_id in [str(ObjectId()), "not-an-id"]:
        response = await postings.get(f"/postings/{posting_id}", headers=auth("candidate"))
        assert_problem(response, 404)


async def test_no_or_bad_token_is_401(postings: httpx.AsyncClient) -> None:
    assert_problem(await postings.post("/postings", json=posting_body()), 401)
    bad = {"Authorization": "Bearer not.a.token"}
    response = await postings.post("/postings", json=posting_body(), headers=bad)
    assert assert_problem(response, 401)["title"] == "Unauthorized"


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
    postings: httpx.AsyncClient, method: str, path: str, body: dict[str, Any] | None
) -> None:
    posting_id = await create_id(postings, new_org())

    response = await postings.request(
        method, path.format(id=posting_id), json=body, headers={"If-Match": "*"}
    )

    assert_problem(response, 401)


@pytest.mark.parametrize("role", ["candidate", "admin"])
async def test_only_employers_create(postings: httpx.AsyncClient, auth: Auth, role: str) -> None:
    response = await postings.post("/postings", json=posting_body(), headers=auth(role))
    assert_problem(response, 403)


async def test_invalid_body_is_a_problem_naming_the_fields(
    postings: httpx.AsyncClient, auth: Auth
) -> None:
    body = posting_body(
        title="x",
        salary={"min": 3, "max": 2, "currency": "USD"},
        location={"city": "Paris", "country": "ZZ"},
        unexpected="field",
    )
    response = await postings.post("/postings", json=body, headers=auth("employer", org="a"))
    assert {"title", "location.country", "salary", "unexpected"} <= problem_fields(response)
    assert "hiring@acme.example" not in response.text  # values are not echoed


async def test_health_readiness_metrics_and_documents_need_no_token(
    postings: httpx.AsyncClient,
) -> None:
    assert (await postings.get("/healthz")).status_code == 200
    ready = await postings.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"mongodb": "ok", "kafka": "ok"}
    metrics = await postings.get("/metrics")
    assert metrics.status_code == 200
    assert "hirestream_http_requests_total" in metrics.text
    assert 'hirestream_outbox_pending_documents{collection="postings"}' in metrics.text
    # requests are labelled by route template, not by raw path (ids would explode the series)
    assert 'route="/postings/{posting_id}"' in metrics.text
    assert "<unmatched>" not in metrics.text
    openapi = (await postings.get("/openapi.json")).json()
    assert "/postings" in openapi["paths"]
    asyncapi = (await postings.get("/asyncapi.json")).json()
    assert "posting.created" in str(asyncapi["channels"])

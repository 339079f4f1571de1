"""The postings service in process, on the real broker and database."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from bson import ObjectId
from pymongo import AsyncMongoClient

from hirestream.postings.app import PostingsSettings, create_app
from hirestream.shared.events.postings import POSTING_CREATED
from tests.conftest import client_for, settings_for, unique_db
from tests.support.factories import posting_body
from tests.support.kafka import read_until
from tests.support.polling import eventually

pytestmark = pytest.mark.integration

Auth = Callable[..., dict[str, str]]


@pytest.fixture(scope="module")
def postings_db() -> str:
    return unique_db("postings")


@pytest.fixture(scope="module")
async def postings(base_env: dict[str, str], postings_db: str) -> AsyncIterator[httpx.AsyncClient]:
    settings = settings_for(PostingsSettings, base_env, mongodb_database=postings_db)
    async for client in client_for(create_app(settings)):
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
    servers: Any,
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

    def mine(records: list[Any]) -> list[Any]:
        return [r for r in records if r.key == posting_id.encode()]

    records = await read_until(
        servers.kafka_bootstrap, ["posting.created"], lambda rs: len(mine(rs)) >= 1
    )
    # Give a duplicate (there must be none) the time to arrive, then read everything again.
    records = await read_until(
        servers.kafka_bootstrap, ["posting.created"], lambda rs: False, timeout_s=3
    )
    ours = mine(records)
    assert len(ours) == 1
    event = POSTING_CREATED.parse(ours[0].value)
    assert ours[0].headers["content-type"].startswith("application/cloudevents+json")
    assert event.subject == posting_id
    assert event.source == "hirestream/postings"
    assert event.correlationid == "req-it-1"
    assert event.data.title == "Staff Platform Engineer"
    assert event.data.org == "globex"
    assert event.data.version == 1

    document = await mongo[postings_db]["postings"].find_one({"_id": ObjectId(posting_id)})
    assert document is not None
    assert document["outbox"] == []

    async def due_time_cleared() -> bool | None:
        # The inline relay leaves it; the sweep clears it once the grace period has passed.
        found = await mongo[postings_db]["postings"].find_one({"_id": ObjectId(posting_id)})
        return True if found is not None and found["outbox_due_at"] is None else None

    assert await eventually(due_time_cleared, timeout_s=30, every_s=0.5)


async def test_unknown_and_malformed_ids_are_404(postings: httpx.AsyncClient, auth: Auth) -> None:
    for posting_id in [str(ObjectId()), "not-an-id"]:
        response = await postings.get(f"/postings/{posting_id}", headers=auth("candidate"))
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["status"] == 404


async def test_no_or_bad_token_is_401(postings: httpx.AsyncClient) -> None:
    assert (await postings.post("/postings", json=posting_body())).status_code == 401
    bad = {"Authorization": "Bearer not.a.token"}
    response = await postings.post("/postings", json=posting_body(), headers=bad)
    assert response.status_code == 401
    assert response.json()["title"] == "Unauthorized"


async def test_only_employers_create(postings: httpx.AsyncClient, auth: Auth) -> None:
    for role in ["candidate", "admin"]:
        response = await postings.post("/postings", json=posting_body(), headers=auth(role))
        assert response.status_code == 403, role


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
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    fields = {item["field"] for item in problem["errors"]}
    assert {"title", "location.country", "salary", "unexpected"} <= fields
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

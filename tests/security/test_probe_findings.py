"""What an outside probe found, each as a black-box test over HTTP: a forged token cannot spend
a user's write budget, out-of-range integers answer problem details, mail goes only to the
address a candidate's token vouches for,
invented HTTP methods add no metric series, IPv6 forms that embed an IPv4 address are refused
as webhook targets, every JSON body is checked whatever its Content-Type says, and tokens
meant to live too long are refused."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest

from hirestream.applications.app import ApplicationsSettings
from hirestream.applications.app import create_app as applications_app
from hirestream.notifications.app import NotificationsSettings
from hirestream.notifications.app import create_app as notifications_app
from hirestream.postings.app import PostingsSettings
from hirestream.postings.app import create_app as postings_app
from hirestream.shared.devtoken import mint_token
from hirestream.shared.events.types import MAX_INT64
from tests.conftest import JWT_SECRET, bearer, http_only_client_for, settings_for, unique_db
from tests.support.factories import posting_body

TOO_BIG = MAX_INT64 + 1


async def postings_api(env: dict[str, str], **changes: str) -> AsyncIterator[httpx.AsyncClient]:
    """The postings API without its lifespan: every answer here comes before any database
    or broker call, which is the point."""
    settings = settings_for(
        PostingsSettings, env, mongodb_database=unique_db("postings"), **changes
    )
    async for client in http_only_client_for(postings_app(settings)):
        yield client


@pytest.fixture(scope="module")
async def postings(base_env: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    async for client in postings_api(base_env):
        yield client


@pytest.fixture
async def limited(base_env: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    """A fresh postings API with a budget of 5 writes a minute per client."""
    async for client in postings_api(base_env, rate_limit_writes="5/minute"):
        yield client


@pytest.fixture(scope="module")
async def notifications(base_env: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    settings = settings_for(
        NotificationsSettings,
        base_env,
        mongodb_database=unique_db("notifications"),
        webhook_allow_private=False,
    )
    async for client in http_only_client_for(notifications_app(settings)):
        yield client


# --- finding 2: a forged token naming a victim spends the forger's budget, not the victim's


async def test_forged_tokens_naming_a_user_do_not_spend_that_users_write_budget(
    limited: httpx.AsyncClient,
) -> None:
    victim = f"emp-{uuid.uuid4().hex[:8]}"
    forged = mint_token("a-wrong-key-" + "x" * 40, role="employer", sub=victim, org="acme")
    for _ in range(10):  # twice the budget
        refused = await limited.post(
            "/postings", json=posting_body(), headers={"Authorization": f"Bearer {forged}"}
        )
        assert refused.status_code in {401, 429}
    # The victim's own (valid) write is not refused for the forger's spending. An invalid body
    # keeps it from reaching the database: 422 is the answer when the budget lets it through.
    own = await limited.post(
        "/postings", json={"title": ""}, headers=bearer("employer", sub=victim, org="acme")
    )
    assert own.status_code == 422, own.text


async def test_unauthenticated_writes_have_a_budget_of_their_own(
    limited: httpx.AsyncClient,
) -> None:
    answers = [(await limited.post("/postings", json={})).status_code for _ in range(8)]
    assert answers[:5] == [401] * 5
    assert 429 in answers[5:]


# --- finding 3: integers that do not fit in 8 bytes are refused, naming the field


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("GET", f"/postings?min_salary={TOO_BIG}", None, "min_salary"),
        ("GET", "/postings?min_salary=99999999999999999999", None, "min_salary"),
        (
            "POST",
            "/postings",
            posting_body(salary={"min": 1, "max": TOO_BIG, "currency": "USD", "period": "year"}),
            "salary.max",
        ),
    ],
)
async def test_integers_beyond_64_bits_are_422_naming_the_field(
    postings: httpx.AsyncClient, method: str, path: str, body: object, field: str
) -> None:
    response = await postings.request(
        method, path, json=body, headers=bearer("employer", sub="emp-big", org="big")
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert field in {error["field"] for error in response.json()["errors"]}


async def test_an_alerts_min_salary_beyond_64_bits_is_422(
    notifications: httpx.AsyncClient,
) -> None:
    response = await notifications.post(
        "/alerts", json={"min_salary": TOO_BIG}, headers=bearer("candidate", sub="cand-big")
    )
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == "min_salary"


# --- finding 4: mail goes only to the address the token vouches for


@pytest.fixture(scope="module")
async def applications(base_env: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    settings = settings_for(
        ApplicationsSettings, base_env, mongodb_database=unique_db("applications")
    )
    async for client in http_only_client_for(applications_app(settings)):
        yield client


@pytest.mark.parametrize(
    "token_email", [None, "candidate@example.com"], ids=["no-email-claim", "another-address"]
)
async def test_an_application_naming_another_address_is_422_naming_the_email(
    applications: httpx.AsyncClient, token_email: str | None
) -> None:
    token = bearer("candidate", sub=f"cand-{uuid.uuid4().hex[:6]}", email=token_email or "")
    body = {
        "name": "Ada",
        "email": "victim@example.com",
        "resume_url": "https://cv.example.com/ada.pdf",
        "consent": {"processing": True},
    }
    response = await applications.post(
        "/postings/000000000000000000000000/applications", json=body, headers=token
    )
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == "email"


async def test_an_alert_naming_another_address_is_422_naming_the_email(
    notifications: httpx.AsyncClient,
) -> None:
    token = bearer("candidate", sub="cand-alert", email="candidate@example.com")
    response = await notifications.post(
        "/alerts", json={"city": "Porto", "email": "victim@example.com"}, headers=token
    )
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == "email"


# --- finding 5: metric labels come from closed sets


async def test_invented_methods_add_no_metric_series(postings: httpx.AsyncClient) -> None:
    invented = [f"PROBE{uuid.uuid4().hex[:6].upper()}" for _ in range(5)] + ["X" * 4000]
    for method in invented:
        await postings.request(method, "/postings")
    metrics = (await postings.get("/metrics")).text
    assert not any(method in metrics for method in invented)
    assert 'method="OTHER"' in metrics


# --- finding 7: IPv6 forms that embed an IPv4 address are not webhook targets


@pytest.mark.parametrize(
    "address",
    [
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254, the cloud metadata address
        "64:ff9b:1::7f00:1",  # NAT64 local-use prefix, 127.0.0.1
        "2002:a00:1::1",  # 6to4 of 10.0.0.1
        "2001:0:4136:e378:8000:63bf:f5ff:fffe",  # Teredo, client 10.0.0.1
        "::a00:1",  # IPv4-compatible 10.0.0.1
        "::ffff:7f00:1",  # IPv4-mapped 127.0.0.1
        "::ffff:0:a00:1",  # IPv4-translated 10.0.0.1
    ],
)
async def test_ipv6_transition_forms_are_refused_as_webhook_targets(
    notifications: httpx.AsyncClient, address: str
) -> None:
    response = await notifications.post(
        "/webhooks",
        json={
            "url": f"https://[{address}]/hook",
            "event_types": ["application.submitted"],
            "secret": "s" * 24,
        },
        headers=bearer("employer", sub="emp-hook", org="hooks"),
    )
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == "url"


# --- finding 8: every JSON body is checked, whatever its Content-Type says


@pytest.mark.parametrize("content_type", ["Application/JSON", "application/vnd.api+JSON", None])
async def test_operator_keys_are_refused_whatever_the_content_type(
    postings: httpx.AsyncClient, content_type: str | None
) -> None:
    headers = bearer("employer", sub=f"emp-{uuid.uuid4().hex[:6]}", org="acme")
    if content_type is not None:
        headers["Content-Type"] = content_type
    response = await postings.post("/postings", content=b'{"title": {"$gt": ""}}', headers=headers)
    assert response.status_code == 422
    assert "starting with '$'" in response.json()["detail"]


async def test_deep_json_is_refused_whatever_the_content_type(
    postings: httpx.AsyncClient,
) -> None:
    headers = bearer("employer", sub=f"emp-{uuid.uuid4().hex[:6]}", org="acme")
    headers["Content-Type"] = "APPLICATION/JSON"
    deep = b"[" * 5000 + b"]" * 5000
    response = await postings.post("/postings", content=deep, headers=headers)
    assert response.status_code == 422
    assert "nested deeper" in response.json()["detail"]


# --- and tokens meant to live too long


async def test_a_token_meant_to_live_longer_than_the_maximum_is_refused(
    postings: httpx.AsyncClient,
) -> None:
    long_lived = mint_token(JWT_SECRET, role="candidate", sub="cand-long", ttl=timedelta(days=30))
    response = await postings.get(
        "/postings/000000000000000000000000", headers={"Authorization": f"Bearer {long_lived}"}
    )
    assert response.status_code == 401
    assert "longer than" in response.json()["detail"]

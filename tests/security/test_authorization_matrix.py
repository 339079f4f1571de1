"""Who may do what: every route of the three services against every kind of caller.

One table, `EXPECTED`, gives per route the status each caller gets: no token, the candidate
who owns the resource (C1), another candidate (C2), an employer of the org that owns it (A),
an employer of another org (B), and an admin. The tests play the table against the three
services (in process, on the real Kafka and MongoDB, each with a database of its own) after
setting up real resources: a posting of org A, C1's application to it (the posting reaches
the applications service through Kafka), C1's alert, org A's webhook and a notification in
C1's inbox. A route the services serve without an entry in the table fails, and so does an
open route (health, readiness, metrics, docs) that asks for a token.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts

from hirestream.applications.app import ApplicationsSettings
from hirestream.applications.app import create_app as applications_app
from hirestream.notifications.app import NotificationsSettings
from hirestream.notifications.app import create_app as notifications_app
from hirestream.notifications.domain import UnsubscribeScope, user_recipient
from hirestream.postings.app import PostingsSettings
from hirestream.postings.app import create_app as postings_app
from hirestream.shared.events.types import utc_now
from tests.conftest import bearer, candidate_email, client_for, settings_for, unique_db
from tests.support.factories import posting_body
from tests.support.notifications import UNSUBSCRIBE_SECRET, unsubscribe_links
from tests.support.polling import eventually

pytestmark = pytest.mark.integration

RUN = uuid.uuid4().hex[:8]
C1, C2, ORG_A, ORG_B = f"cand-1-{RUN}", f"cand-2-{RUN}", f"org-a-{RUN}", f"org-b-{RUN}"


class Caller(StrEnum):
    NONE = "none"
    CANDIDATE = "candidate"  # C1, who owns the application, the alert and the notification
    OTHER_CANDIDATE = "other candidate"  # C2
    EMPLOYER = "employer"  # of org A, which owns the posting and the webhook
    OTHER_EMPLOYER = "other employer"  # of org B
    ADMIN = "admin"


HEADERS: dict[Caller, dict[str, str]] = {
    Caller.NONE: {},
    Caller.CANDIDATE: bearer("candidate", sub=C1),
    Caller.OTHER_CANDIDATE: bearer("candidate", sub=C2),
    Caller.EMPLOYER: bearer("employer", sub=f"recruiter-a-{RUN}", org=ORG_A),
    Caller.OTHER_EMPLOYER: bearer("employer", sub=f"recruiter-b-{RUN}", org=ORG_B),
    Caller.ADMIN: bearer("admin", sub=f"admin-{RUN}"),
}

CANDIDATES = {Caller.CANDIDATE: C1, Caller.OTHER_CANDIDATE: C2}

Route = tuple[str, str, str]  # (service, method, path template)
P, A, N = "postings", "applications", "notifications"


def row(*statuses: int) -> dict[Caller, int]:
    """The statuses in the table's column order: the callers in the order `Caller` lists."""
    assert len(statuses) == len(Caller)
    return dict(zip(Caller, statuses, strict=True))


# P, A, N: the postings, applications and notifications services. C1, C2: the candidates;
# empA, empB: employers of orgs A and B. Each write whose success changes what the next
# caller would meet runs on a fresh resource per caller (see CALLS). On the erasure routes the
# candidate column is the (fresh) candidate the path names, not C1: erasing C1 would take the
# other rows' resources away.
# fmt: off
EXPECTED: dict[Route, dict[Caller, int]] = {
    #                                                         none C1   C2   empA empB admin
    (P, "POST", "/postings"):                             row(401, 403, 403, 201, 201, 403),
    (P, "GET", "/postings"):                              row(401, 200, 200, 200, 200, 200),
    (P, "GET", "/postings/{posting_id}"):                 row(401, 200, 200, 200, 200, 200),
    (P, "PATCH", "/postings/{posting_id}"):               row(401, 403, 403, 200, 403, 403),
    (P, "POST", "/postings/{posting_id}/close"):          row(401, 403, 403, 200, 403, 200),
    (A, "POST", "/postings/{posting_id}/applications"):   row(401, 201, 201, 403, 403, 403),
    (A, "GET", "/applications"):                          row(401, 200, 200, 200, 200, 200),
    (A, "GET", "/applications/{application_id}"):         row(401, 200, 404, 200, 404, 200),
    (A, "POST", "/applications/{application_id}/status"): row(401, 403, 404, 200, 404, 200),
    (A, "GET", "/postings/{posting_id}/pipeline"):        row(401, 403, 403, 200, 403, 200),
    (A, "POST", "/candidates/{candidate_id}/erasure"):    row(401, 202, 403, 403, 403, 202),
    (A, "GET", "/candidates/{candidate_id}/erasure"):     row(401, 200, 403, 403, 403, 200),
    (N, "GET", "/notifications"):                         row(401, 200, 200, 200, 200, 200),
    (N, "POST", "/notifications/{notification_id}/read"): row(401, 200, 404, 404, 404, 404),
    (N, "GET", "/preferences"):                           row(401, 200, 200, 200, 200, 200),
    (N, "PUT", "/preferences"):                           row(401, 200, 200, 200, 200, 200),
    (N, "POST", "/alerts"):                               row(401, 201, 201, 403, 403, 403),
    (N, "GET", "/alerts"):                                row(401, 200, 200, 403, 403, 403),
    (N, "DELETE", "/alerts/{alert_id}"):                  row(401, 204, 404, 403, 403, 403),
    (N, "POST", "/webhooks"):                             row(401, 403, 403, 201, 201, 201),
    (N, "GET", "/webhooks"):                              row(401, 403, 403, 200, 200, 200),
    (N, "DELETE", "/webhooks/{webhook_id}"):              row(401, 403, 403, 204, 404, 404),
    (N, "GET", "/webhooks/{webhook_id}/deliveries"):      row(401, 403, 403, 200, 404, 404),
    (N, "GET", "/notifications/unread-count"):            row(401, 200, 200, 200, 200, 200),
    (N, "POST", "/notifications/read-all"):               row(401, 200, 200, 200, 200, 200),
    # Public by design: the signed token in the query is what authorises it, whoever sends it.
    (N, "POST", "/unsubscribe"):                          row(200, 200, 200, 200, 200, 200),
    (N, "POST", "/webhooks/{webhook_id}/ping"):           row(401, 403, 403, 200, 404, 404),
    (N, "POST", "/webhooks/{webhook_id}/secret"):         row(401, 403, 403, 200, 404, 404),
    (N, "POST", "/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver"):
                                                          row(401, 403, 403, 200, 404, 404),
}
# fmt: on

# Served to anyone: health, readiness, metrics and the API documents.
OPEN_PATHS = frozenset(
    {
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/docs",
        "/docs/oauth2-redirect",
        "/redoc",
        "/asyncapi.json",
        "/asyncapi",
    }
)
CONTRACT_OPEN_PATHS = frozenset(
    {"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/asyncapi.json"}
)

APPLICATION_FORM = {
    "name": "Maya Okafor",
    "email": "maya.okafor@example.com",
    "resume_url": "https://cdn.example.com/resumes/maya-okafor.pdf",
    "consent": {"processing": True},
    "skills": ["Python", "Kafka"],
}
ALERT = {"skills": ["kafka"], "city": "Seattle"}
ROTATION = {"secret": "whsec-rotated-0123456789abcdef"}
WEBHOOK = {
    "url": "http://127.0.0.1:9/x",  # nothing listens on the discard port: deliveries fail
    "event_types": ["application.submitted"],
    "secret": "whsec-0123456789abcdef",
}


# --- the services and the resources the table is played on ----------------------------------


@dataclass(frozen=True)
class Service:
    app: FastAPI
    client: httpx.AsyncClient


@pytest.fixture(scope="module")
async def services(base_env: dict[str, str]) -> AsyncIterator[dict[str, Service]]:
    # The fixtures apply by polling, several at once: the write rate limit is not what this
    # module tests (tests/integration/test_request_guard.py does).
    env = {**base_env, "RATE_LIMIT_WRITES": "100000/minute"}
    apps = {
        # Consumers first: they must be listening before the first posting is published.
        A: applications_app(
            settings_for(ApplicationsSettings, env, mongodb_database=unique_db("authz_app"))
        ),
        N: notifications_app(
            settings_for(
                NotificationsSettings,
                env,
                mongodb_database=unique_db("authz_ntf"),
                webhook_allow_private=True,
                delivery_max_attempts=2,
                unsubscribe_secret=UNSUBSCRIBE_SECRET,
            )
        ),
        P: postings_app(
            settings_for(PostingsSettings, env, mongodb_database=unique_db("authz_pst"))
        ),
    }
    async with AsyncExitStack() as stack:
        started = {}
        for name, app in apps.items():
            client = await stack.enter_async_context(asynccontextmanager(client_for)(app))
            started[name] = Service(app, client)
        yield started


def created(response: httpx.Response, id_field: str) -> str:
    assert response.status_code == 201, response.text
    value: str = response.json()[id_field]
    return value


@dataclass
class World:
    """The three services and the resources of org A and candidate C1 on them."""

    services: dict[str, Service]
    ids: dict[str, str] = field(default_factory=dict)

    def client(self, service: str) -> httpx.AsyncClient:
        return self.services[service].client

    async def new_posting(self) -> str:
        """A posting of org A, just published (the applications service may not know it yet)."""
        response = await self.client(P).post(
            "/postings", json=posting_body(), headers=HEADERS[Caller.EMPLOYER]
        )
        return created(response, "posting_id")

    async def apply_when_known(self, posting_id: str, candidate: str) -> str:
        """Apply as soon as the posting has reached the applications service via Kafka."""

        async def attempt() -> httpx.Response | None:
            response = await self.client(A).post(
                f"/postings/{posting_id}/applications",
                json={**APPLICATION_FORM, "email": candidate_email(candidate)},
                headers=bearer("candidate", sub=candidate),
            )
            return None if response.status_code == 404 else response

        return created(await eventually(attempt, timeout_s=60, every_s=0.5), "application_id")

    async def new_application(self) -> str:
        """C1's application (submitted) to a new posting of org A."""
        return await self.apply_when_known(await self.new_posting(), C1)

    async def new_alert(self) -> str:
        response = await self.client(N).post(
            "/alerts", json=ALERT, headers=HEADERS[Caller.CANDIDATE]
        )
        return created(response, "alert_id")

    async def new_webhook(self) -> str:
        response = await self.client(N).post(
            "/webhooks", json=WEBHOOK, headers=HEADERS[Caller.EMPLOYER]
        )
        return created(response, "webhook_id")

    async def inbox(self, caller: Caller) -> list[dict[str, Any]]:
        response = await self.client(N).get("/notifications", headers=HEADERS[caller])
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items


@pytest.fixture(scope="module")
async def world(services: dict[str, Service]) -> World:
    world = World(services)
    world.ids["alert_id"] = await world.new_alert()
    world.ids["webhook_id"] = await world.new_webhook()
    world.ids["posting_id"] = await world.new_posting()
    world.ids["application_id"] = await world.apply_when_known(world.ids["posting_id"], C1)
    # A second posting nobody in the table has applied to: the "apply" row's target. A
    # throwaway candidate's application proves the applications service knows it.
    world.ids["open_posting_id"] = await world.new_posting()
    await world.apply_when_known(world.ids["open_posting_id"], f"cand-probe-{RUN}")
    # C1 is told of their application in the app: that is the notification to mark read.
    inbox = await eventually(lambda: world.inbox(Caller.CANDIDATE), timeout_s=60)
    world.ids["notification_id"] = inbox[0]["notification_id"]
    return world


# --- how each route is called -------------------------------------------------------------

Ids = Callable[[World], Awaitable[dict[str, str]]]


async def shared(world: World) -> dict[str, str]:
    return dict(world.ids)


async def the_open_posting(world: World) -> dict[str, str]:
    return {"posting_id": world.ids["open_posting_id"]}


async def fresh_posting(world: World) -> dict[str, str]:
    return {"posting_id": await world.new_posting()}


async def fresh_application(world: World) -> dict[str, str]:
    return {"application_id": await world.new_application()}


async def fresh_alert(world: World) -> dict[str, str]:
    return {"alert_id": await world.new_alert()}


async def fresh_webhook(world: World) -> dict[str, str]:
    return {"webhook_id": await world.new_webhook()}


def new_candidate() -> str:
    return f"cand-erasable-{uuid.uuid4().hex[:12]}"


async def fresh_candidate(world: World) -> dict[str, str]:
    return {"candidate_id": new_candidate()}


async def erasure_requested(world: World) -> dict[str, str]:
    """A fresh candidate who has asked to be erased."""
    candidate_id = new_candidate()
    response = await world.client(A).post(
        f"/candidates/{candidate_id}/erasure", headers=bearer("candidate", sub=candidate_id)
    )
    assert response.status_code == 202, response.text
    return {"candidate_id": candidate_id}


async def unsubscribe_token(world: World) -> dict[str, str]:
    """C1's link to stop emails about their applications, as an email of theirs carries it."""
    scope = UnsubscribeScope(user_recipient(C1), "application.submitted")
    return {"token": unsubscribe_links(UNSUBSCRIBE_SECRET).token(scope, now=utc_now())}


async def failed_delivery(world: World) -> dict[str, str]:
    """A delivery to org A's webhook that failed (nothing listens at its URL)."""

    async def failed() -> str | None:
        response = await world.client(N).get(
            f"/webhooks/{world.ids['webhook_id']}/deliveries", headers=HEADERS[Caller.EMPLOYER]
        )
        assert response.status_code == 200, response.text
        ids = [d["delivery_id"] for d in response.json()["items"] if d["status"] == "failed"]
        return ids[0] if ids else None

    delivery_id = await eventually(failed, timeout_s=60, every_s=0.5)
    return {"webhook_id": world.ids["webhook_id"], "delivery_id": delivery_id}


@dataclass(frozen=True)
class Call:
    """A valid request to one route: the ids for its path (made anew for each caller where a
    success changes state), its body, headers, ids sent as query parameters, and the id that
    names the candidate column's caller where that is not C1."""

    ids: Ids = shared
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    query: tuple[str, ...] = ()
    candidate: str | None = None
    # The body names the caller's own address (a candidate applies with their verified email).
    callers_email: bool = False


CALLS: dict[Route, Call] = {
    (P, "POST", "/postings"): Call(body=posting_body()),
    (P, "GET", "/postings"): Call(),
    (P, "GET", "/postings/{posting_id}"): Call(),
    (P, "PATCH", "/postings/{posting_id}"): Call(
        fresh_posting, body={"title": "Staff Backend Developer"}, headers={"If-Match": '"1"'}
    ),
    (P, "POST", "/postings/{posting_id}/close"): Call(fresh_posting, body={"reason": "filled"}),
    (A, "POST", "/postings/{posting_id}/applications"): Call(
        the_open_posting, body=APPLICATION_FORM, callers_email=True
    ),
    (A, "GET", "/applications"): Call(query=("posting_id",)),
    (A, "GET", "/applications/{application_id}"): Call(),
    (A, "GET", "/postings/{posting_id}/pipeline"): Call(),
    (A, "POST", "/applications/{application_id}/status"): Call(
        fresh_application, body={"to_status": "screening"}
    ),
    (A, "POST", "/candidates/{candidate_id}/erasure"): Call(
        fresh_candidate, candidate="candidate_id"
    ),
    (A, "GET", "/candidates/{candidate_id}/erasure"): Call(
        erasure_requested, candidate="candidate_id"
    ),
    (N, "GET", "/notifications"): Call(),
    (N, "POST", "/notifications/{notification_id}/read"): Call(),  # marking again is a no-op
    (N, "GET", "/preferences"): Call(),
    (N, "PUT", "/preferences"): Call(body={"channels": {"posting.created": ["in_app"]}}),
    (N, "POST", "/alerts"): Call(body=ALERT),
    (N, "GET", "/alerts"): Call(),
    (N, "DELETE", "/alerts/{alert_id}"): Call(fresh_alert),
    (N, "POST", "/webhooks"): Call(body=WEBHOOK),
    (N, "GET", "/webhooks"): Call(),
    (N, "DELETE", "/webhooks/{webhook_id}"): Call(fresh_webhook),
    (N, "GET", "/webhooks/{webhook_id}/deliveries"): Call(),
    (N, "GET", "/notifications/unread-count"): Call(),
    (N, "POST", "/notifications/read-all"): Call(),
    (N, "POST", "/unsubscribe"): Call(unsubscribe_token, query=("token",)),  # again: a no-op
    (N, "POST", "/webhooks/{webhook_id}/ping"): Call(),  # nothing listens: 200, ok false
    (N, "POST", "/webhooks/{webhook_id}/secret"): Call(fresh_webhook, body=ROTATION),
    (N, "POST", "/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver"): Call(failed_delivery),
}


async def play(world: World, route: Route, caller: Caller, ids: dict[str, str]) -> httpx.Response:
    service, method, template = route
    call = CALLS[route]
    headers = HEADERS[caller]
    if caller is Caller.CANDIDATE and call.candidate is not None:
        headers = bearer("candidate", sub=ids[call.candidate])
    body = call.body
    if call.callers_email and body is not None and caller in CANDIDATES:
        body = {**body, "email": candidate_email(CANDIDATES[caller])}
    return await world.client(service).request(
        method,
        template.format(**ids),
        json=body,
        params={name: ids[name] for name in call.query},
        headers={**headers, **call.headers},
    )


def served_routes(app: FastAPI) -> set[tuple[str, str]]:
    """(method, path template) of every route the app serves (HEAD goes with GET). FastAPI
    keeps an included router as one entry of `app.routes`: this walks into it."""
    return {
        (method, route.path)
        for route in iter_route_contexts(app.routes)
        if route.path is not None
        for method in (route.methods or set()) - {"HEAD"}
    }


# --- the tests ------------------------------------------------------------------------------


def test_every_route_called_is_in_the_table() -> None:
    assert set(CALLS) == set(EXPECTED)


@pytest.mark.parametrize("service", [P, A, N])
def test_every_route_served_is_in_the_table(services: dict[str, Service], service: str) -> None:
    served = {
        (service, method, path)
        for method, path in served_routes(services[service].app)
        if path not in OPEN_PATHS
    }
    declared = {route for route in EXPECTED if route[0] == service}
    assert served - declared == set(), "routes without an entry in EXPECTED"
    assert declared - served == set(), "entries in EXPECTED for routes not served"


@pytest.mark.parametrize("service", [P, A, N])
async def test_open_routes_answer_without_a_token(
    services: dict[str, Service], service: str
) -> None:
    served = services[service]
    open_gets = sorted(path for method, path in served_routes(served.app) if path in OPEN_PATHS)
    assert set(open_gets) >= CONTRACT_OPEN_PATHS
    answers = {path: (await served.client.get(path)).status_code for path in open_gets}
    assert answers == dict.fromkeys(open_gets, 200)


@pytest.mark.parametrize("route", list(EXPECTED), ids=" ".join)
async def test_each_caller_gets_what_the_table_says(world: World, route: Route) -> None:
    fresh = await asyncio.gather(*(CALLS[route].ids(world) for _ in Caller))
    answered: dict[Caller, int] = {}
    details: dict[Caller, str] = {}
    for caller, ids in zip(Caller, fresh, strict=True):
        response = await play(world, route, caller, ids)
        answered[caller] = response.status_code
        details[caller] = response.text[:200]
    mismatches = {
        caller: (f"expected {EXPECTED[route][caller]}", details[caller])
        for caller in Caller
        if answered[caller] != EXPECTED[route][caller]
    }
    assert answered == EXPECTED[route], mismatches


async def test_lists_show_each_caller_only_their_own(world: World) -> None:
    """Lists are scoped: the other candidate and the other employer see nothing of C1's or
    org A's, the owners and the admin see it."""

    async def listed(service: str, path: str, caller: Caller, **params: str) -> list[Any]:
        response = await world.client(service).get(path, params=params, headers=HEADERS[caller])
        assert response.status_code == 200, response.text
        body = response.json()
        items: list[Any] = body["items"] if isinstance(body, dict) else body
        return items

    posting_id = world.ids["posting_id"]
    applications = {
        caller: len(await listed(A, "/applications", caller, posting_id=posting_id))
        for caller in Caller
        if caller is not Caller.NONE
    }
    assert applications == {
        Caller.CANDIDATE: 1,
        Caller.OTHER_CANDIDATE: 0,
        Caller.EMPLOYER: 1,
        Caller.OTHER_EMPLOYER: 0,
        Caller.ADMIN: 1,
    }
    assert await listed(A, "/applications", Caller.OTHER_EMPLOYER) == []
    for caller in (Caller.OTHER_CANDIDATE, Caller.OTHER_EMPLOYER, Caller.ADMIN):
        inbox = await world.inbox(caller)
        assert world.ids["notification_id"] not in {item["notification_id"] for item in inbox}
    other_alerts = await listed(N, "/alerts", Caller.OTHER_CANDIDATE)
    assert world.ids["alert_id"] not in {alert["alert_id"] for alert in other_alerts}
    for caller in (Caller.OTHER_EMPLOYER, Caller.ADMIN):
        webhooks = await listed(N, "/webhooks", caller)
        assert world.ids["webhook_id"] not in {webhook["webhook_id"] for webhook in webhooks}


async def test_the_same_candidate_cannot_apply_twice(world: World) -> None:
    response = await world.client(A).post(
        f"/postings/{world.ids['posting_id']}/applications",
        json={**APPLICATION_FORM, "email": candidate_email(C1)},
        headers=HEADERS[Caller.CANDIDATE],
    )
    assert response.status_code == 409, response.text
    assert response.json()["application_id"] == world.ids["application_id"]

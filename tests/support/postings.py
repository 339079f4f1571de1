"""Test support for the postings service.

- Test data: drafts, postings as stored (open or closed), the commands the routes make.
- `FakePostings`: `PostingStore` in memory, behaving as the MongoDB store promises to, for unit
  tests of the use cases; it can let another writer in between a use case's read and write.
- For the integration tests on the real servers: the service in process, the HTTP calls as
  each party, a small job board to search (`CATALOGUE`), and the events read back from Kafka.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from hirestream.postings.app import PostingsSettings, create_app
from hirestream.postings.domain import (
    Posting,
    PostingChanges,
    PostingDraft,
    PostingSearch,
    search_tokens,
)
from hirestream.postings.services import (
    ChangePosting,
    ClosePosting,
    IfMatch,
    PostingsUnitOfWork,
    PublishPosting,
)
from hirestream.shared.events.postings import CloseReason
from hirestream.shared.messaging.outbox import OutboxEntry
from hirestream.shared.service_layer.idempotency import IdempotentRequest, request_hash
from hirestream.shared.storage.pagination import InvalidCursor, Page
from tests.conftest import bearer, client_for, settings_for
from tests.support.factories import posting_body
from tests.support.fakes import InMemoryAggregates, RecordingRelay
from tests.support.kafka import Record, keyed, read_until
from tests.support.servers import Servers

SOURCE = "hirestream/postings"
CREATED = "posting.created"
UPDATED = "posting.updated"
CLOSED = "posting.closed"
POSTING_TOPICS = [CREATED, UPDATED, CLOSED]

# ------------------------------------------------------------------------------ test data

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
ORG = "acme"
OTHER_ORG = "globex"
RECRUITER = "user-recruiter-ana"
POSTING_ID = "6650f1c2e4b0a1b2c3d4e5f6"


def draft(**fields: Any) -> PostingDraft:
    """What an employer sends to publish (`posting_body`), as the route parses it."""
    return PostingDraft.model_validate(posting_body(**fields))


def changes(**fields: Any) -> PostingChanges:
    """A PATCH body as the route parses it: only the fields named are set."""
    return PostingChanges.model_validate(fields)


def open_posting(posting_id: str = POSTING_ID, *, org: str = ORG, **fields: Any) -> Posting:
    """A posting as stored after it was published (version 1), without its event."""
    posting, _ = Posting.publish(draft(**fields), posting_id=posting_id, org=org, now=NOW)
    return posting


def closed_posting(posting_id: str = POSTING_ID, *, org: str = ORG) -> Posting:
    closed, _ = open_posting(posting_id, org=org).close(CloseReason.FILLED, now=NOW)
    return closed


def publishing(
    *, org: str = ORG, caller: str = RECRUITER, key: str | None = None, **fields: Any
) -> PublishPosting:
    """The command `POST /postings` makes; with `key`, as under an Idempotency-Key, hashing
    what the route hashes (the org and the draft)."""
    body = draft(**fields)
    request = None
    if key is not None:
        asked = {"org": org, "draft": body.model_dump(mode="json")}
        request = IdempotentRequest(caller, key, request_hash(asked))
    return PublishPosting(body, org, request)


def changing(if_match: IfMatch | None, *, org: str | None = ORG, **fields: Any) -> ChangePosting:
    """The command `PATCH /postings/POSTING_ID` makes (a new title unless `fields` say)."""
    return ChangePosting(
        POSTING_ID, changes(**(fields or {"title": "Lead Developer"})), org, if_match
    )


def closing(
    org: str | None = ORG, *, is_admin: bool = False, reason: CloseReason = CloseReason.FILLED
) -> ClosePosting:
    """The command `POST /postings/POSTING_ID/close` makes."""
    return ClosePosting(POSTING_ID, reason, org, is_admin)


def version(*versions: int) -> IfMatch:
    """If-Match naming these versions' ETags."""
    return IfMatch(frozenset(versions))


ANY_VERSION = IfMatch(frozenset(), any_version=True)  # If-Match: *


def edited(posting: Posting) -> Posting:
    """The posting as another request's change leaves it: a new version."""
    changed, _ = posting.change(changes(title=f"{posting.title} (edited)"), now=NOW)
    return changed


def closed_meanwhile(posting: Posting) -> Posting:
    closed, _ = posting.close(CloseReason.CANCELLED, now=NOW)
    return closed


# ---------------------------------------------------------------------------------- fakes


def _newest_first(posting: Posting) -> tuple[datetime, str]:
    return posting.created_at, posting.posting_id


def _matches(posting: Posting, search: PostingSearch) -> bool:
    """The store's query (`store._query`), on a model instead of a document."""
    salary_max = posting.salary.max if posting.salary is not None else None
    city = search.city.casefold() if search.city is not None else None
    country = search.country.upper() if search.country is not None else None
    return (
        posting.status is search.status
        and set(search.q) <= set(search_tokens(posting))
        and set(search.skills) <= set(posting.skills)
        and city in (None, posting.location.city.casefold())
        and country in (None, posting.location.country)
        and search.workplace in (None, posting.workplace)
        and search.seniority in (None, posting.seniority)
        and search.employment_type in (None, posting.employment_type)
        and search.org in (None, posting.org)
        and (
            search.min_salary is None
            or (salary_max is not None and salary_max >= search.min_salary)
        )
    )


class FakePostings(InMemoryAggregates[Posting]):
    """`PostingStore` in memory: unique ids, updates only from the version they were made
    from, search newest first with a cursor. `concurrently` makes another writer change a
    stored posting just before the next updates, as a concurrent request would."""

    def __init__(self, *postings: Posting) -> None:
        super().__init__(lambda posting: posting.posting_id)
        self._meanwhile: list[Callable[[Posting], Posting]] = []
        for posting in postings:
            self.put(posting)

    def concurrently(self, change: Callable[[Posting], Posting], *, times: int = 1) -> None:
        """Before each of the next `times` updates, replace the stored posting by
        `change(stored)` (a change another request committed meanwhile)."""
        self._meanwhile += [change] * times

    async def update(
        self, aggregate: Posting, outbox: Sequence[OutboxEntry], expected_version: int
    ) -> str:
        if self._meanwhile:
            change = self._meanwhile.pop(0)
            self.put(change(self.aggregates[aggregate.posting_id]))
        return await super().update(aggregate, outbox, expected_version)

    async def search(
        self, search: PostingSearch, *, limit: int, cursor: str | None
    ) -> Page[Posting]:
        found = sorted(
            (p for p in self.aggregates.values() if _matches(p, search)),
            key=_newest_first,
            reverse=True,
        )
        # The cursor is the last id returned: the fake's own, as opaque as the store's.
        if cursor is not None:
            ids = [posting.posting_id for posting in found]
            if cursor not in ids:
                raise InvalidCursor(cursor)
            found = found[ids.index(cursor) + 1 :]
        page = found[:limit]
        more = len(found) > limit
        return Page[Posting](items=page, next_cursor=page[-1].posting_id if more else None)

    async def expired(self, now: datetime, *, limit: int) -> list[Posting]:
        """The store's query: open, with an end at or before `now`, earliest end first."""
        due = [
            posting
            for posting in self.aggregates.values()
            if posting.is_open and posting.expires_at is not None and posting.expires_at <= now
        ]
        return sorted(due, key=lambda posting: (posting.expires_at, posting.posting_id))[:limit]


def nothing_written(postings: FakePostings, relay: RecordingRelay) -> bool:
    """No write reached the store, no event was recorded, the relay was told nothing."""
    return postings.writes == 0 and postings.outbox == [] and relay.notified == []


def postings_unit_of_work(postings: FakePostings, relay: RecordingRelay) -> PostingsUnitOfWork:
    return PostingsUnitOfWork(postings, relay, source=SOURCE)


# ------------------------------------------------------- the service on the real servers


async def running_postings(
    base_env: dict[str, str], database: str, **changes: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """The postings service in process (its relays, consumer and expiry job running), on
    `database`; `changes`: settings of its own."""
    settings = settings_for(PostingsSettings, base_env, mongodb_database=database, **changes)
    async for client in client_for(create_app(settings)):
        yield client


def ttl_days(seconds: float) -> float:
    """A lifetime of `seconds`, in the unit of POSTING_DEFAULT_TTL_DAYS."""
    return seconds / 86_400


def new_org() -> str:
    return f"org-{uuid.uuid4().hex[:12]}"


def employer(org: str) -> dict[str, str]:
    return bearer("employer", org=org)


def recruiter(org: str, name: str, key: str) -> dict[str, str]:
    """A named employer user of `org` sending an Idempotency-Key (keys are per user)."""
    return {**bearer("employer", sub=f"{name}-{org}", org=org), "Idempotency-Key": key}


def if_match(org: str, tag: str) -> dict[str, str]:
    return {**employer(org), "If-Match": tag}


async def create(client: httpx.AsyncClient, org: str, **fields: Any) -> dict[str, Any]:
    response = await client.post("/postings", json=posting_body(**fields), headers=employer(org))
    assert response.status_code == 201, response.text
    posting: dict[str, Any] = response.json()
    return posting


async def create_id(client: httpx.AsyncClient, org: str, **fields: Any) -> str:
    return str((await create(client, org, **fields))["posting_id"])


async def close(
    client: httpx.AsyncClient, posting_id: str, headers: dict[str, str], reason: str = "filled"
) -> httpx.Response:
    return await client.post(
        f"/postings/{posting_id}/close", json={"reason": reason}, headers=headers
    )


async def fetch(client: httpx.AsyncClient, posting_id: str) -> httpx.Response:
    response = await client.get(f"/postings/{posting_id}", headers=bearer("candidate"))
    assert response.status_code == 200, response.text
    return response


async def search(client: httpx.AsyncClient, **params: str | int) -> httpx.Response:
    return await client.get("/postings", params=params, headers=bearer("candidate"))


def item_ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [item["posting_id"] for item in response.json()["items"]]


def cursor_at(position: dict[str, Any]) -> str:
    """A cursor encoded as the service encodes its own, around any position."""
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode().rstrip("=")


# ------------------------------------------------------------------ a job board to search

# A small job board under one org, published oldest first in this order.
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
    """CATALOGUE as published: its org, and each name's posting id."""

    org: str
    ids: dict[str, str]

    def names(self, response: httpx.Response) -> set[str]:
        by_id = {posting_id: name for name, posting_id in self.ids.items()}
        return {by_id[posting_id] for posting_id in item_ids(response)}


async def publish_catalogue(client: httpx.AsyncClient) -> Catalogue:
    """CATALOGUE, published under an org of its own, oldest first."""
    org = new_org()
    ids = {name: await create_id(client, org, **body) for name, body in CATALOGUE.items()}
    return Catalogue(org, ids)


# ------------------------------------------------------------------ events on the wire

# Longer than the outbox's inline grace (5 s), after which its sweep would send again anything
# the relay left behind: a duplicate, if there is one, has shown up by then.
DUPLICATE_GRACE_S = 6.0


async def events_of(servers: Servers, topic: str, posting_id: str) -> list[Record]:
    """The posting's records on `topic`, once at least one is there."""
    records = await read_until(
        servers.kafka_bootstrap, [topic], lambda rs: bool(keyed(rs, posting_id))
    )
    return keyed(records, posting_id)


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

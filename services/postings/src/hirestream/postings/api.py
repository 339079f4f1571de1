"""The postings HTTP API: parse, authorise, call the domain and the store, shape responses."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request, Response, status

from hirestream.postings.domain import Posting, PostingDraft
from hirestream.postings.store import PostingStore
from hirestream.shared.events.postings import POSTING_CREATED
from hirestream.shared.events.types import utc_now
from hirestream.shared.messaging.outbox import OutboxRelay
from hirestream.shared.web.auth import Authenticated, Principal, Role, require_role
from hirestream.shared.web.problems import Problem

Employer = Annotated[Principal, require_role(Role.EMPLOYER)]

NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "no posting with this id"}}


def etag(posting: Posting) -> str:
    return f'"{posting.version}"'


def postings_router(store: PostingStore, relay: OutboxRelay, *, source: str) -> APIRouter:
    router = APIRouter(prefix="/postings", tags=["postings"])

    @router.post(
        "",
        status_code=status.HTTP_201_CREATED,
        summary="Publish a posting (employer); posting.created follows",
    )
    async def create_posting(
        draft: PostingDraft, employer: Employer, request: Request, response: Response
    ) -> Posting:
        assert employer.org is not None  # guaranteed for employers by the token check
        posting, created = Posting.publish(
            draft, posting_id=store.new_id(), org=employer.org, now=utc_now()
        )
        event = POSTING_CREATED.new(
            created, source=source, correlation_id=request.state.correlation_id
        )
        await store.insert(posting, [event])
        relay.notify(posting.posting_id)
        response.headers["Location"] = f"/postings/{posting.posting_id}"
        response.headers["ETag"] = etag(posting)
        return posting

    @router.get("/{posting_id}", summary="One posting", responses=NOT_FOUND)
    async def get_posting(posting_id: str, _: Authenticated, response: Response) -> Posting:
        posting = await store.get(posting_id)
        if posting is None:
            raise Problem(404, f"posting {posting_id} does not exist")
        response.headers["ETag"] = etag(posting)
        return posting

    return router

"""The postings HTTP API: parse, authorise, call the domain and the store, shape responses."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict

from hirestream.postings.domain import (
    Posting,
    PostingChanges,
    PostingDraft,
    PostingIsClosed,
    PostingSearch,
)
from hirestream.postings.store import PostingExists, PostingStore
from hirestream.shared.events.postings import (
    POSTING_CLOSED,
    POSTING_CREATED,
    POSTING_UPDATED,
    CloseReason,
    EmploymentType,
    PostingStatus,
    Seniority,
    Workplace,
)
from hirestream.shared.events.types import utc_now
from hirestream.shared.messaging.outbox import OutboxRelay
from hirestream.shared.web.auth import Authenticated, Principal, Role, require_role
from hirestream.shared.web.idempotency import (
    IdempotencyKey,
    first_response,
    new_id,
    replay,
    request_hash,
)
from hirestream.shared.web.problems import Problem

Employer = Annotated[Principal, require_role(Role.EMPLOYER)]
EmployerOrAdmin = Annotated[Principal, require_role(Role.EMPLOYER, Role.ADMIN)]

# How often a close retries when a concurrent change moved the version under it.
CLOSE_ATTEMPTS = 3


def _responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    described = {
        401: "no valid token",
        403: "not the owning employer",
        404: "no posting with this id",
        409: "the posting is closed",
        412: "If-Match names an older version",
        422: "invalid fields, named in `errors`, or an Idempotency-Key reused for another request",
        428: "If-Match is required",
    }
    return {code: {"description": described[code]} for code in codes}


class PostingPage(BaseModel):
    items: list[Posting]
    next_cursor: str | None


class CloseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: CloseReason


def etag(posting: Posting) -> str:
    return f'"{posting.version}"'


def matches_if_match(if_match: str, posting: Posting) -> bool:
    """RFC 9110 If-Match: `*`, or a list of strong entity tags (weak ones never match)."""
    tags = [tag.strip() for tag in if_match.split(",")]
    return "*" in tags or etag(posting) in tags


def postings_router(store: PostingStore, relay: OutboxRelay, *, source: str) -> APIRouter:
    router = APIRouter(prefix="/postings", tags=["postings"])

    async def load(posting_id: str) -> Posting:
        posting = await store.get(posting_id)
        if posting is None:
            raise Problem(404, f"posting {posting_id} does not exist")
        return posting

    @router.post(
        "",
        status_code=status.HTTP_201_CREATED,
        summary="Publish a posting (employer); posting.created follows",
        responses=_responses(401, 403, 422),
        response_model=Posting,
    )
    async def create_posting(
        draft: PostingDraft,
        employer: Employer,
        request: Request,
        idempotency_key: IdempotencyKey = None,
    ) -> Response:
        assert employer.org is not None  # guaranteed for employers by the token check
        fingerprint = request_hash({"org": employer.org, "draft": draft.model_dump(mode="json")})
        posting, created = Posting.publish(
            draft,
            posting_id=new_id(employer.user_id, idempotency_key),
            org=employer.org,
            now=utc_now(),
        )
        event = POSTING_CREATED.new(
            created, source=source, correlation_id=request.state.correlation_id
        )
        body = posting.__pydantic_serializer__.to_json(posting)
        headers = {"Location": f"/postings/{posting.posting_id}", "ETag": etag(posting)}
        idempotency = first_response(
            idempotency_key, fingerprint, status=201, headers=headers, body=body
        )
        try:
            outbox = await store.insert(posting, [event], idempotency=idempotency)
        except PostingExists:
            assert idempotency_key is not None  # only a key's derived id can be taken
            first = await store.response_for_key(employer.user_id, idempotency_key)
            if first is None:  # no record beside the id: nothing to replay, nothing created
                raise Problem(409, "this Idempotency-Key was used before") from None
            return replay(first, fingerprint)
        relay.notify(store.document_id(posting.posting_id), written=outbox)
        return Response(body, status_code=201, media_type="application/json", headers=headers)

    @router.get(
        "",
        summary="Search postings, newest first (open ones unless `status` says otherwise)",
        responses=_responses(401, 422),
    )
    async def list_postings(
        _: Authenticated,
        q: Annotated[str | None, Query(max_length=200, description="words, all present")] = None,
        skills: Annotated[
            str | None, Query(max_length=500, description="comma list, all required")
        ] = None,
        city: Annotated[str | None, Query(max_length=100)] = None,
        country: Annotated[str | None, Query(pattern=r"^[A-Za-z]{2}$")] = None,
        workplace: Workplace | None = None,
        seniority: Seniority | None = None,
        employment_type: EmploymentType | None = None,
        min_salary: Annotated[int | None, Query(ge=0, description="minor units")] = None,
        org: Annotated[str | None, Query(max_length=100)] = None,
        status: PostingStatus = PostingStatus.OPEN,
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
        cursor: Annotated[str | None, Query(max_length=200)] = None,
    ) -> PostingPage:
        try:
            search = PostingSearch.from_query(
                q=q,
                skills=skills,
                city=city,
                country=country,
                workplace=workplace,
                seniority=seniority,
                employment_type=employment_type,
                min_salary=min_salary,
                org=org,
                status=status,
            )
        except ValueError as error:
            raise Problem(422, f"invalid search: {error}") from error
        items, next_cursor = await store.search(search, limit=limit, cursor=cursor)
        return PostingPage(items=items, next_cursor=next_cursor)

    @router.get("/{posting_id}", summary="One posting", responses=_responses(401, 404))
    async def get_posting(posting_id: str, _: Authenticated, response: Response) -> Posting:
        posting = await load(posting_id)
        response.headers["ETag"] = etag(posting)
        return posting

    @router.patch(
        "/{posting_id}",
        summary="Change an open posting (owning employer); posting.updated follows",
        responses=_responses(401, 403, 404, 409, 412, 422, 428),
    )
    async def change_posting(
        posting_id: str,
        changes: PostingChanges,
        employer: Employer,
        request: Request,
        response: Response,
        if_match: Annotated[str | None, Header()] = None,
    ) -> Posting:
        posting = await load(posting_id)
        if not posting.owned_by(employer.org):
            raise Problem(403, "only the employer that owns this posting may change it")
        if if_match is None:
            raise Problem(428, "send If-Match with the ETag of the version you changed")
        if not matches_if_match(if_match, posting):
            raise Problem(412, f"the posting is at version {posting.version} now")
        try:
            changed, updated = posting.change(changes, now=utc_now())
        except PostingIsClosed as error:
            raise Problem(409, "a closed posting cannot be changed") from error
        if updated is not None:
            event = POSTING_UPDATED.new(
                updated, source=source, correlation_id=request.state.correlation_id
            )
            if not await store.replace_version(
                changed, expected_version=posting.version, events=[event]
            ):
                raise Problem(412, "the posting changed meanwhile; fetch it and try again")
            relay.notify(store.document_id(posting_id))
        response.headers["ETag"] = etag(changed)
        return changed

    @router.post(
        "/{posting_id}/close",
        summary="Close a posting (owning employer, or admin); posting.closed follows",
        responses=_responses(401, 403, 404, 409, 422),
    )
    async def close_posting(
        posting_id: str,
        body: CloseRequest,
        caller: EmployerOrAdmin,
        request: Request,
        response: Response,
    ) -> Posting:
        for _ in range(CLOSE_ATTEMPTS):
            posting = await load(posting_id)
            if not (caller.is_admin or posting.owned_by(caller.org)):
                raise Problem(403, "only the employer that owns this posting may close it")
            try:
                closed, event = posting.close(body.reason, now=utc_now())
            except PostingIsClosed as error:
                raise Problem(409, "the posting is already closed") from error
            envelope = POSTING_CLOSED.new(
                event, source=source, correlation_id=request.state.correlation_id
            )
            if await store.replace_version(
                closed, expected_version=posting.version, events=[envelope]
            ):
                relay.notify(store.document_id(posting_id))
                response.headers["ETag"] = etag(closed)
                return closed
        raise Problem(409, "the posting keeps changing; try again", headers={"Retry-After": "1"})

    return router

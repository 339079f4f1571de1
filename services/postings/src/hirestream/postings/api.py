"""The postings HTTP API: parse, authorise, call one use case, shape the response."""

import json
import re
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field

from hirestream.postings import services
from hirestream.postings.domain import (
    DEFAULT_EXPIRY,
    ExpiryPolicy,
    Posting,
    PostingChanges,
    PostingDraft,
    PostingSearch,
)
from hirestream.postings.jobposting import JOB_POSTING_SCHEMA, JSON_LD, job_posting
from hirestream.postings.services import (
    ChangePosting,
    ClosePosting,
    IfMatch,
    NoLongerAdvertised,
    PostingsUnitOfWork,
    PublishPosting,
    UnitOfWorkFactory,
)
from hirestream.shared.events.postings import (
    CloseReason,
    EmploymentType,
    PostingStatus,
    Seniority,
    Workplace,
)
from hirestream.shared.events.types import NonNegativeInt64
from hirestream.shared.identity import Principal, Role
from hirestream.shared.storage.pagination import Page
from hirestream.shared.web.auth import Authenticated, require_role
from hirestream.shared.web.dependencies import made_by
from hirestream.shared.web.idempotency import IdempotencyKey, created_response, idempotent
from hirestream.shared.web.openapi import ETAG, LOCATION, REPLAYED, route_responses
from hirestream.shared.web.problems import Problem

Employer = Annotated[Principal, require_role(Role.EMPLOYER)]
EmployerOrAdmin = Annotated[Principal, require_role(Role.EMPLOYER, Role.ADMIN)]

NOT_FOUND = "no posting with this id"
INVALID_FIELDS = "invalid fields, named in `errors`"
INVALID_EXPIRY = "`expires_at` in the past or beyond POSTING_MAX_TTL_DAYS ahead"

# One example per request body, shown by /docs and sent by schemathesis' examples phase.
DRAFT_EXAMPLES: dict[str, Any] = {
    "hybrid": {
        "summary": "A hybrid senior role with a salary range",
        "value": {
            "title": "Senior Backend Engineer",
            "company": "Acme Corp",
            "description": "Design and run event-driven services in Python on Kafka and MongoDB.",
            "location": {"city": "Seattle", "region": "WA", "country": "US"},
            "workplace": "hybrid",
            "employment_type": "full_time",
            "seniority": "senior",
            "skills": ["Python", "Kafka", "MongoDB"],
            "salary": {"min": 16000000, "max": 19000000, "currency": "USD", "period": "year"},
            "contact_email": "hiring@acme.example",
        },
    }
}
CHANGES_EXAMPLES: dict[str, Any] = {
    "retitle": {
        "summary": "A new title and skills; the salary removed",
        "value": {"title": "Staff Backend Engineer", "skills": ["Python", "Kafka"], "salary": None},
    }
}
CLOSE_EXAMPLES: dict[str, Any] = {"filled": {"summary": "Filled", "value": {"reason": "filled"}}}


class PostingFilters(BaseModel):
    """The query of `GET /postings`: every filter given must hold."""

    q: str | None = Field(default=None, max_length=200, description="words, all present")
    skills: str | None = Field(default=None, max_length=500, description="comma list, all required")
    city: str | None = Field(default=None, max_length=100)
    country: str | None = Field(default=None, pattern=r"^[A-Za-z]{2}$")
    workplace: Workplace | None = None
    seniority: Seniority | None = None
    employment_type: EmploymentType | None = None
    min_salary: NonNegativeInt64 | None = Field(default=None, description="minor units")
    org: str | None = Field(default=None, max_length=100)
    status: PostingStatus = PostingStatus.OPEN
    limit: int = Field(default=20, ge=1, le=100)
    cursor: str | None = Field(default=None, max_length=200)


class CloseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: CloseReason


def etag(posting: Posting) -> str:
    return f'"{posting.version}"'


# ASCII digits only, and few: str.isdigit() also takes "²" and int() refuses over 4300 digits,
# either of which would answer 500 to a tag that merely names no version of ours.
_VERSION_TAG = re.compile(r'"([0-9]{1,18})"')


def if_match_of(header: str | None) -> IfMatch | None:
    """RFC 9110 If-Match: `*`, or a list of strong entity tags (weak ones never match)."""
    if header is None:
        return None
    tags = [tag.strip() for tag in header.split(",")]
    versions = {int(found[1]) for tag in tags if (found := _VERSION_TAG.fullmatch(tag))}
    return IfMatch(frozenset(versions), any_version="*" in tags)


def posting_response(posting: Posting, headers: dict[str, str] | None = None) -> Response:
    return Response(
        posting.json_bytes(),
        media_type="application/json",
        headers={"ETag": etag(posting), **(headers or {})},
    )


# The representations of `GET /postings/{id}`, the default first.
REPRESENTATIONS = ("application/json", JSON_LD)
# Both answer at one URL: caches must keep them apart.
VARY_ACCEPT = {"Vary": "Accept"}


def _quality(media_range: str) -> tuple[str, float]:
    """A media range of `Accept` and its weight; a weight that is not one (`q=x`, `q=nan`,
    `q=2`) makes the range unacceptable rather than an error."""
    name, *parameters = (part.strip() for part in media_range.split(";"))
    quality = 1.0
    for parameter in parameters:
        key, _, value = parameter.partition("=")
        if key.strip().lower() == "q":
            try:
                quality = float(value)
            except ValueError:
                quality = 0.0
            if not 0.0 <= quality <= 1.0:  # also false for nan
                quality = 0.0
    return name.lower(), quality


def negotiated(accept: str | None) -> str:
    """The representation `Accept` prefers (RFC 9110 §12.5.1: the most specific range naming
    each gives its quality); JSON on a tie, without the header, or when neither is acceptable
    (a client that asks for something else still gets the default)."""
    ranges = [_quality(item) for item in (accept or "").split(",") if item.strip()]

    def quality(media_type: str) -> float:
        kind = media_type.split("/")[0]
        for candidate in (media_type, f"{kind}/*", "*/*"):
            found = [q for name, q in ranges if name == candidate]
            if found:
                return max(found)
        return 0.0

    best = max(REPRESENTATIONS, key=quality)  # max keeps the first of equals: JSON
    return best if quality(best) > 0 else REPRESENTATIONS[0]


def job_posting_response(posting: Posting) -> Response:
    # The posting's version is its ETag in either representation; Vary keeps them apart.
    return Response(
        json.dumps(job_posting(posting), ensure_ascii=False).encode(),
        media_type=JSON_LD,
        headers={"ETag": etag(posting), **VARY_ACCEPT},
    )


def _with_json_ld(responses: dict[int | str, dict[str, Any]]) -> dict[int | str, dict[str, Any]]:
    """The 200 of `GET /postings/{id}` in both representations (FastAPI adds the JSON one from
    the response model)."""
    responses[200]["content"] = {JSON_LD: {"schema": JOB_POSTING_SCHEMA}}
    responses[200]["headers"]["Vary"] = {
        "description": "`Accept`: the representation depends on it",
        "required": True,
        "schema": {"type": "string"},
    }
    responses[200]["description"] = (
        "The posting (`application/json`), or, to `Accept: application/ld+json`, the open "
        "posting as a schema.org JobPosting"
    )
    return responses


def postings_router(
    unit_of_work: UnitOfWorkFactory, *, expiry: ExpiryPolicy = DEFAULT_EXPIRY
) -> APIRouter:
    router = APIRouter(prefix="/postings", tags=["postings"])
    Uow = Annotated[PostingsUnitOfWork, made_by(unit_of_work)]

    @router.post(
        "",
        status_code=status.HTTP_201_CREATED,
        summary="Publish a posting (employer); posting.created follows",
        responses=route_responses(
            {
                403: "the caller is not an employer",
                409: "the Idempotency-Key was used before, and its first response is not kept",
                422: f"{INVALID_FIELDS} ({INVALID_EXPIRY} among them), or an Idempotency-Key "
                "used for a different request",
            },
            success=201,
            success_headers=(LOCATION, ETAG, REPLAYED),
            write=True,
            json_body=True,
        ),
        response_model=Posting,
    )
    async def create_posting(
        draft: Annotated[PostingDraft, Body(openapi_examples=DRAFT_EXAMPLES)],
        employer: Employer,
        uow: Uow,
        idempotency_key: IdempotencyKey = None,
    ) -> Response:
        assert employer.org is not None  # guaranteed for employers by the token check
        request = idempotent(
            employer.user_id,
            idempotency_key,
            {"org": employer.org, "draft": draft.model_dump(mode="json")},
        )
        published = await services.publish_posting(
            PublishPosting(draft, employer.org, request), uow, expiry=expiry
        )
        posting = published.posting
        return created_response(
            posting.json_bytes(),
            location=f"/postings/{posting.posting_id}",
            replayed=published.replayed,
            headers={"ETag": etag(posting)},
        )

    @router.get(
        "",
        summary="Search postings, newest first (open ones unless `status` says otherwise)",
        responses=route_responses(
            {
                422: "invalid filters, limit or cursor, named in `errors`, or a search the "
                "filters cannot make"
            }
        ),
    )
    async def list_postings(
        _: Authenticated, uow: Uow, filters: Annotated[PostingFilters, Query()]
    ) -> Page[Posting]:
        try:
            search = PostingSearch.from_query(**filters.model_dump(exclude={"limit", "cursor"}))
        except ValueError as error:
            raise Problem(422, f"invalid search: {error}") from error
        return await services.search_postings(
            search, uow, limit=filters.limit, cursor=filters.cursor
        )

    @router.get(
        "/{posting_id}",
        summary="One posting; as a schema.org JobPosting to `Accept: application/ld+json`",
        responses=_with_json_ld(
            route_responses(
                {
                    404: NOT_FOUND,
                    410: "a JobPosting was asked for, and the posting is closed or past its "
                    "`expires_at`: no longer advertised",
                },
                success_headers=(ETAG,),
            )
        ),
        response_model=Posting,
    )
    async def get_posting(
        posting_id: str,
        _: Authenticated,
        uow: Uow,
        accept: Annotated[
            str | None,
            Header(description=f"`{JSON_LD}` for the JobPosting; JSON otherwise"),
        ] = None,
    ) -> Response:
        if negotiated(accept) != JSON_LD:
            return posting_response(await services.get_posting(posting_id, uow), VARY_ACCEPT)
        try:
            return job_posting_response(await services.advertised_posting(posting_id, uow))
        except NoLongerAdvertised as error:
            raise Problem(410, error.detail) from error

    @router.patch(
        "/{posting_id}",
        summary="Change an open posting (owning employer); posting.updated follows",
        responses=route_responses(
            {
                403: "the caller is not the employer that owns the posting",
                404: NOT_FOUND,
                409: "the posting is closed",
                412: "If-Match names an older version, or the posting changed meanwhile",
                422: f"{INVALID_FIELDS}: {INVALID_EXPIRY} among them",
                428: "no If-Match: send the ETag of the version you changed",
            },
            success_headers=(ETAG,),
            write=True,
            json_body=True,
        ),
        response_model=Posting,
    )
    async def change_posting(
        posting_id: str,
        changes: Annotated[PostingChanges, Body(openapi_examples=CHANGES_EXAMPLES)],
        employer: Employer,
        uow: Uow,
        if_match: Annotated[
            str | None,
            Header(description='the ETag of the version being changed, `"<version>"`, or `*`'),
        ] = None,
    ) -> Response:
        command = ChangePosting(posting_id, changes, employer.org, if_match_of(if_match))
        return posting_response(await services.change_posting(command, uow, expiry=expiry))

    @router.post(
        "/{posting_id}/close",
        summary="Close a posting (owning employer, or admin); posting.closed follows",
        responses=route_responses(
            {
                403: "the caller is neither the employer that owns the posting nor an admin",
                404: NOT_FOUND,
                409: "the posting is already closed, or keeps changing (Retry-After)",
                422: INVALID_FIELDS,
            },
            success_headers=(ETAG,),
            retry_after=(409,),
            write=True,
            json_body=True,
        ),
        response_model=Posting,
    )
    async def close_posting(
        posting_id: str,
        body: Annotated[CloseRequest, Body(openapi_examples=CLOSE_EXAMPLES)],
        caller: EmployerOrAdmin,
        uow: Uow,
    ) -> Response:
        command = ClosePosting(posting_id, body.reason, caller.org, caller.is_admin)
        return posting_response(await services.close_posting(command, uow))

    return router

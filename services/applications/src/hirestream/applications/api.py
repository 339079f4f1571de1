"""The applications HTTP API: apply, read, list, and move through the status workflow."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from hirestream.applications.domain import (
    Application,
    ApplicationForm,
    IllegalMove,
    Party,
    PostingNotOpen,
    WrongParty,
)
from hirestream.applications.store import (
    ApplicationStore,
    DuplicateApplication,
    ErasureRequestStore,
    PostingReadModel,
)
from hirestream.shared.events.applications import (
    APPLICATION_STATUS_CHANGED,
    APPLICATION_SUBMITTED,
    ApplicationStatus,
)
from hirestream.shared.events.privacy import (
    CANDIDATE_ERASURE_REQUESTED,
    ERASING_SERVICES,
    CandidateErasureRequested,
)
from hirestream.shared.events.types import UtcDateTime, utc_now
from hirestream.shared.messaging.outbox import OutboxRelay
from hirestream.shared.storage.mongo import Document
from hirestream.shared.web.auth import Authenticated, Principal, Role, require_role
from hirestream.shared.web.idempotency import (
    IdempotencyKey,
    first_response,
    new_id,
    replay,
    request_hash,
)
from hirestream.shared.web.problems import Problem

Candidate = Annotated[Principal, require_role(Role.CANDIDATE)]
# How often a status change retries when a concurrent change moved the version under it.
MOVE_ATTEMPTS = 3


def _responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    described = {
        401: "no valid token",
        403: "the caller's role may not do this",
        404: "no such application or posting visible to the caller",
        409: "closed posting, duplicate application, or an illegal move (allowed ones named)",
        422: "invalid fields, or an Idempotency-Key reused for a different request",
    }
    return {code: {"description": described[code]} for code in codes}


class ApplicationPage(BaseModel):
    items: list[Application]
    next_cursor: str | None


class StatusRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to_status: ApplicationStatus
    reason: str | None = Field(default=None, max_length=1000)


def hashed_request(posting_id: str, form: ApplicationForm) -> str:
    return request_hash({"posting_id": posting_id, "form": form.model_dump(mode="json")})


def visible_to(application: Application, caller: Principal) -> bool:
    return (
        caller.is_admin
        or (caller.role is Role.CANDIDATE and caller.user_id == application.candidate.candidate_id)
        or (caller.role is Role.EMPLOYER and caller.org == application.org)
    )


def applications_router(
    store: ApplicationStore, postings: PostingReadModel, relay: OutboxRelay, *, source: str
) -> APIRouter:
    router = APIRouter(tags=["applications"])

    async def load_visible(application_id: str, caller: Principal) -> Application:
        application = await store.get(application_id)
        # Someone else's application is "not found": its existence is not the caller's business.
        if application is None or not visible_to(application, caller):
            raise Problem(404, f"application {application_id} does not exist")
        return application

    @router.post(
        "/postings/{posting_id}/applications",
        status_code=201,
        summary="Apply to an open posting (candidate); application.submitted follows",
        responses=_responses(401, 403, 404, 409, 422),
        response_model=Application,
    )
    async def apply(
        posting_id: str,
        form: ApplicationForm,
        candidate: Candidate,
        request: Request,
        idempotency_key: IdempotencyKey = None,
    ) -> Response:
        fingerprint = hashed_request(posting_id, form)

        async def replay_of_earlier_request() -> Response | None:
            """The response to an earlier request with this Idempotency-Key, if any. Looked
            up only when this request would not create the application: a retry's insert
            fails on the `_id` derived from the key, so a first request needs no lookup."""
            if not idempotency_key:
                return None
            prior = await store.find_by_idempotency_key(candidate.user_id, idempotency_key)
            if prior is None:
                return None
            if prior.get("idempotency") is None:  # anonymised since: no response to replay
                raise Problem(422, "this Idempotency-Key was used before")
            return replay(prior["idempotency"], fingerprint)

        posting = await postings.get(posting_id)
        if posting is None:
            if earlier := await replay_of_earlier_request():
                return earlier
            raise Problem(404, f"posting {posting_id} does not exist")
        try:
            application, submitted = Application.submit(
                form,
                application_id=new_id(candidate.user_id, idempotency_key),
                candidate_id=candidate.user_id,
                posting=posting,
                now=utc_now(),
            )
        except PostingNotOpen as error:
            if earlier := await replay_of_earlier_request():  # it was open for the first
                return earlier
            raise Problem(409, "the posting is closed") from error
        event = APPLICATION_SUBMITTED.new(
            submitted, source=source, correlation_id=request.state.correlation_id
        )
        # The response's bytes, rendered once: a replay returns exactly these, and one
        # binary value is cheaper to store and read back than the application's fields again.
        body = application.__pydantic_serializer__.to_json(application)
        headers = {"Location": f"/applications/{application.application_id}"}
        idempotency = first_response(
            idempotency_key, fingerprint, status=201, headers=headers, body=body
        )
        try:
            outbox = await store.insert(application, [event], idempotency=idempotency)
        except DuplicateApplication as error:
            if earlier := await replay_of_earlier_request():  # a retry of this request
                return earlier
            existing = await store.find_for(candidate.user_id, posting_id)
            if existing is None:  # withdrawn and erased meanwhile: let the client retry
                raise Problem(409, "a concurrent application; try again") from error
            raise Problem(
                409,
                f"you already applied to this posting: application {existing['_id']}",
                application_id=str(existing["_id"]),
            ) from error
        relay.notify(store.document_id(application.application_id), written=outbox)
        return Response(body, status_code=201, media_type="application/json", headers=headers)

    @router.get(
        "/applications/{application_id}",
        summary="One application (its candidate, the posting's employer, or admin)",
        responses=_responses(401, 404),
    )
    async def get_application(application_id: str, caller: Authenticated) -> Application:
        return await load_visible(application_id, caller)

    @router.get(
        "/applications",
        summary="Applications newest first: a candidate's own, an employer's org's, or all",
        responses=_responses(401, 422),
    )
    async def list_applications(
        caller: Authenticated,
        posting_id: Annotated[str | None, Query(max_length=64)] = None,
        status: ApplicationStatus | None = None,
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
        cursor: Annotated[str | None, Query(max_length=200)] = None,
    ) -> ApplicationPage:
        scope: dict[str, str | None] = {}
        if caller.role is Role.CANDIDATE:
            scope["candidate_id"] = caller.user_id
        elif caller.role is Role.EMPLOYER:
            scope["org"] = caller.org
        items, next_cursor = await store.list(
            **scope, posting_id=posting_id, status=status, limit=limit, cursor=cursor
        )
        return ApplicationPage(items=items, next_cursor=next_cursor)

    @router.post(
        "/applications/{application_id}/status",
        summary="Move an application; application.status_changed follows",
        responses=_responses(401, 403, 404, 409, 422),
    )
    async def change_status(
        application_id: str, body: StatusRequest, caller: Authenticated, request: Request
    ) -> Application:
        for _ in range(MOVE_ATTEMPTS):
            application = await load_visible(application_id, caller)
            party = Party.CANDIDATE if caller.role is Role.CANDIDATE else Party.EMPLOYER
            try:
                moved, changed = application.move(
                    body.to_status,
                    by=party,
                    user_id=caller.user_id,
                    reason=body.reason,
                    now=utc_now(),
                )
            except WrongParty as error:
                raise Problem(403, str(error)) from error
            except IllegalMove as error:
                allowed = [str(status) for status in error.allowed]
                raise Problem(
                    409,
                    f"{error.current} cannot move to {error.target}; "
                    f"allowed: {', '.join(allowed) or 'none (final status)'}",
                    allowed_moves=allowed,
                ) from error
            event = APPLICATION_STATUS_CHANGED.new(
                changed, source=source, correlation_id=request.state.correlation_id
            )
            if await store.replace_version(
                moved, expected_version=application.version, events=[event]
            ):
                relay.notify(store.document_id(application_id))
                return moved
        raise Problem(
            409, "the application keeps changing; try again", headers={"Retry-After": "1"}
        )

    return router


class ErasureStatus(BaseModel):
    request_id: str
    candidate_id: str
    status: str = Field(description="pending until every service confirmed, then complete")
    requested_at: UtcDateTime
    confirmations: list[dict[str, Any]]
    waiting_for: list[str]


def erasure_status(document: Document) -> ErasureStatus:
    confirmed = {item["service"] for item in document.get("confirmations", [])}
    waiting = [service for service in ERASING_SERVICES if service not in confirmed]
    return ErasureStatus(
        request_id=document["_id"],
        candidate_id=document["candidate_id"],
        status="complete" if not waiting else "pending",
        requested_at=document["requested_at"],
        confirmations=sorted(document.get("confirmations", []), key=lambda c: c["service"]),
        waiting_for=waiting,
    )


def privacy_router(requests: ErasureRequestStore, relay: OutboxRelay, *, source: str) -> APIRouter:
    router = APIRouter(tags=["privacy"])

    def authorise(candidate_id: str, caller: Principal) -> None:
        if not (
            caller.is_admin or (caller.role is Role.CANDIDATE and caller.user_id == candidate_id)
        ):
            raise Problem(403, "only the candidate themself, or an admin, may do this")

    @router.post(
        "/candidates/{candidate_id}/erasure",
        status_code=202,
        summary="Erase a candidate's personal data in every service (the candidate, or admin)",
        responses=_responses(401, 403),
    )
    async def request_erasure(
        candidate_id: str, caller: Authenticated, request: Request, response: Response
    ) -> ErasureStatus:
        authorise(candidate_id, caller)
        response.headers["Location"] = f"/candidates/{candidate_id}/erasure"
        latest = await requests.latest_for(candidate_id)
        if latest is not None and erasure_status(latest).status == "pending":
            return erasure_status(latest)  # one request at a time: this one is under way
        now = utc_now()
        document = {
            "_id": str(uuid.uuid4()),
            "candidate_id": candidate_id,
            "requested_by": caller.user_id,
            "requested_at": now,
        }
        event = CANDIDATE_ERASURE_REQUESTED.new(
            CandidateErasureRequested(
                candidate_id=candidate_id,
                request_id=document["_id"],
                requested_by=caller.user_id,
                requested_at=now,
            ),
            source=source,
            correlation_id=request.state.correlation_id,
        )
        await requests.create(document, [event])
        relay.notify(document["_id"])
        return erasure_status({**document, "confirmations": []})

    @router.get(
        "/candidates/{candidate_id}/erasure",
        summary="The status of the latest erasure request (the candidate, or admin)",
        responses=_responses(401, 403, 404),
    )
    async def get_erasure(candidate_id: str, caller: Authenticated) -> ErasureStatus:
        authorise(candidate_id, caller)
        latest = await requests.latest_for(candidate_id)
        if latest is None:
            raise Problem(404, f"no erasure was requested for candidate {candidate_id}")
        return erasure_status(latest)

    return router

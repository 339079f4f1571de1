"""The applications HTTP API: apply, read, list, move through the workflow; erasure requests."""

from typing import Annotated, Any, Self

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from hirestream.applications import services
from hirestream.applications.domain import (
    Application,
    ApplicationForm,
    Confirmation,
    ErasureRequest,
)
from hirestream.applications.services import (
    ApplicationsUnitOfWork,
    ChangeStatus,
    ErasureUnitOfWork,
    ErasureUnitOfWorkFactory,
    SubmitApplication,
    UnitOfWorkFactory,
)
from hirestream.shared.events.applications import ApplicationStatus
from hirestream.shared.events.types import UtcDateTime
from hirestream.shared.identity import Principal, Role
from hirestream.shared.storage.pagination import Page
from hirestream.shared.web.auth import Authenticated, require_role
from hirestream.shared.web.idempotency import IdempotencyKey, created_response, idempotent

Candidate = Annotated[Principal, require_role(Role.CANDIDATE)]


def _responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    described = {
        401: "no valid token",
        403: "the caller's role may not do this",
        404: "no such application or posting visible to the caller",
        409: "closed posting, duplicate application, or an illegal move (allowed ones named)",
        422: "invalid fields, or an Idempotency-Key reused for a different request",
    }
    return {code: {"description": described[code]} for code in codes}


class StatusRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to_status: ApplicationStatus
    reason: str | None = Field(default=None, max_length=1000)


def applications_router(unit_of_work: UnitOfWorkFactory) -> APIRouter:
    router = APIRouter(tags=["applications"])
    Uow = Annotated[ApplicationsUnitOfWork, Depends(unit_of_work)]

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
        uow: Uow,
        idempotency_key: IdempotencyKey = None,
    ) -> Response:
        request = idempotent(
            candidate.user_id,
            idempotency_key,
            {"posting_id": posting_id, "form": form.model_dump(mode="json")},
        )
        command = SubmitApplication(posting_id, form, candidate.user_id, candidate.email, request)
        submitted = await services.submit_application(command, uow)
        application = submitted.application
        return created_response(
            application.json_bytes(),
            location=f"/applications/{application.application_id}",
            replayed=submitted.replayed,
        )

    @router.get(
        "/applications/{application_id}",
        summary="One application (its candidate, the posting's employer, or admin)",
        responses=_responses(401, 404),
    )
    async def get_application(application_id: str, caller: Authenticated, uow: Uow) -> Application:
        return (await services.get_application(application_id, caller, uow)).as_seen_by(caller)

    @router.get(
        "/applications",
        summary="Applications newest first: a candidate's own, an employer's org's, or all",
        responses=_responses(401, 422),
    )
    async def list_applications(
        caller: Authenticated,
        uow: Uow,
        posting_id: Annotated[str | None, Query(max_length=64)] = None,
        status: ApplicationStatus | None = None,
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
        cursor: Annotated[str | None, Query(max_length=200)] = None,
    ) -> Page[Application]:
        page = await services.list_applications(
            caller, uow, posting_id=posting_id, status=status, limit=limit, cursor=cursor
        )
        return page.map(lambda application: application.as_seen_by(caller))

    @router.post(
        "/applications/{application_id}/status",
        summary="Move an application; application.status_changed follows",
        responses=_responses(401, 403, 404, 409, 422),
    )
    async def change_status(
        application_id: str, body: StatusRequest, caller: Authenticated, uow: Uow
    ) -> Application:
        command = ChangeStatus(application_id, body.to_status, body.reason, caller)
        return (await services.change_status(command, uow)).as_seen_by(caller)

    return router


class ErasureStatus(BaseModel):
    request_id: str
    candidate_id: str
    status: str = Field(description="pending until every service confirmed, then complete")
    requested_at: UtcDateTime
    confirmations: list[Confirmation]
    waiting_for: list[str]

    @classmethod
    def of(cls, request: ErasureRequest) -> Self:
        return cls(
            request_id=request.request_id,
            candidate_id=request.candidate_id,
            status="complete" if request.complete else "pending",
            requested_at=request.requested_at,
            confirmations=sorted(request.confirmations, key=lambda c: c.service),
            waiting_for=request.waiting_for,
        )


def privacy_router(unit_of_work: ErasureUnitOfWorkFactory) -> APIRouter:
    router = APIRouter(tags=["privacy"])
    Uow = Annotated[ErasureUnitOfWork, Depends(unit_of_work)]

    @router.post(
        "/candidates/{candidate_id}/erasure",
        status_code=202,
        summary="Erase a candidate's personal data in every service (the candidate, or admin)",
        responses=_responses(401, 403),
    )
    async def request_erasure(
        candidate_id: str, caller: Authenticated, uow: Uow, response: Response
    ) -> ErasureStatus:
        request = await services.request_erasure(candidate_id, caller, uow)
        response.headers["Location"] = f"/candidates/{candidate_id}/erasure"
        return ErasureStatus.of(request)

    @router.get(
        "/candidates/{candidate_id}/erasure",
        summary="The status of the latest erasure request (the candidate, or admin)",
        responses=_responses(401, 403, 404),
    )
    async def get_erasure(candidate_id: str, caller: Authenticated, uow: Uow) -> ErasureStatus:
        return ErasureStatus.of(await services.get_erasure(candidate_id, caller, uow))

    return router

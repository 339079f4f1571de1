"""The applications HTTP API: apply, read, list (triage), move through the workflow; a
posting's pipeline; erasure requests."""

from typing import Annotated, Any, Self

from fastapi import APIRouter, Body, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from hirestream.applications import services
from hirestream.applications.domain import (
    Application,
    ApplicationForm,
    ApplicationOrder,
    Confirmation,
    ErasureRequest,
    Pipeline,
)
from hirestream.applications.services import (
    ApplicationsUnitOfWork,
    ChangeStatus,
    ErasureUnitOfWork,
    ErasureUnitOfWorkFactory,
    Journeys,
    PostingViews,
    SubmitApplication,
    UnitOfWorkFactory,
)
from hirestream.shared.events.applications import ApplicationStatus
from hirestream.shared.events.types import UtcDateTime
from hirestream.shared.identity import Principal, Role
from hirestream.shared.storage.pagination import Page
from hirestream.shared.web.auth import Authenticated, require_role
from hirestream.shared.web.dependencies import made_by
from hirestream.shared.web.idempotency import IdempotencyKey, created_response, idempotent
from hirestream.shared.web.openapi import LOCATION, REPLAYED, route_responses

Candidate = Annotated[Principal, require_role(Role.CANDIDATE)]

APPLICATION_NOT_FOUND = "no such application the caller may see"
ERASURE_FORBIDDEN = "the caller is neither this candidate nor an admin"

# One example per request body, shown by /docs and sent by schemathesis' examples phase.
FORM_EXAMPLES: dict[str, Any] = {
    "apply": {
        "summary": "An application with consent to processing",
        "value": {
            "name": "Maya Okafor",
            "email": "maya.okafor@example.com",
            "resume_url": "https://cv.example.com/maya-okafor.pdf",
            "skills": ["Python", "Kafka"],
            "cover_letter": "I have run Kafka consumers in production for five years.",
            "consent": {"processing": True, "keep_profile": False},
        },
    }
}
STATUS_EXAMPLES: dict[str, Any] = {
    "screening": {
        "summary": "The employer moves it to screening",
        "value": {"to_status": "screening", "reason": "strong Kafka experience"},
    }
}


class StatusRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to_status: ApplicationStatus
    reason: str | None = Field(default=None, max_length=1000)


def applications_router(unit_of_work: UnitOfWorkFactory) -> APIRouter:
    router = APIRouter(tags=["applications"])
    Uow = Annotated[ApplicationsUnitOfWork, made_by(unit_of_work)]

    @router.post(
        "/postings/{posting_id}/applications",
        status_code=201,
        summary="Apply to an open posting (candidate); application.submitted follows",
        responses=route_responses(
            {
                403: "the caller is not a candidate",
                404: "no posting with this id is known here (yet: postings arrive as events)",
                409: "the posting is closed; the candidate already applied to it (the body names "
                "`application_id`); or the Idempotency-Key was used before and its first "
                "response is not kept",
                422: "invalid fields, named in `errors`: among them an email other than the "
                "token's verified one, or an Idempotency-Key used for a different request",
            },
            success=201,
            success_headers=(LOCATION, REPLAYED),
            write=True,
            json_body=True,
        ),
        response_model=Application,
    )
    async def apply(
        posting_id: str,
        form: Annotated[ApplicationForm, Body(openapi_examples=FORM_EXAMPLES)],
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
        responses=route_responses({404: APPLICATION_NOT_FOUND}),
    )
    async def get_application(application_id: str, caller: Authenticated, uow: Uow) -> Application:
        return (await services.get_application(application_id, caller, uow)).as_seen_by(caller)

    @router.get(
        "/applications",
        summary="Applications newest first, or a posting's best match first: a candidate's "
        "own, an employer's org's, or all",
        responses=route_responses(
            {
                422: "invalid filters, sort, limit or cursor, named in `errors` (`sort=-match` "
                "without `posting_id`; a cursor of another sort)"
            }
        ),
    )
    async def list_applications(
        caller: Authenticated,
        uow: Uow,
        posting_id: Annotated[str | None, Query(max_length=64)] = None,
        status: ApplicationStatus | None = None,
        sort: Annotated[
            ApplicationOrder,
            Query(
                description="`-submitted_at`: newest first; `-match`: highest match score "
                "first, within one posting (needs `posting_id`)"
            ),
        ] = ApplicationOrder.NEWEST,
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
        cursor: Annotated[str | None, Query(max_length=200)] = None,
    ) -> Page[Application]:
        page = await services.list_applications(
            caller,
            uow,
            posting_id=posting_id,
            status=status,
            order=sort,
            limit=limit,
            cursor=cursor,
        )
        return page.map(lambda application: application.as_seen_by(caller))

    @router.post(
        "/applications/{application_id}/status",
        summary="Move an application; application.status_changed follows",
        responses=route_responses(
            {
                403: "the caller is not the party who may make this move",
                404: APPLICATION_NOT_FOUND,
                409: "a move the workflow does not allow from the current status (the body "
                "lists `allowed_moves`), or the application keeps changing (Retry-After)",
                422: "invalid fields, named in `errors`",
            },
            retry_after=(409,),
            write=True,
            json_body=True,
        ),
    )
    async def change_status(
        application_id: str,
        body: Annotated[StatusRequest, Body(openapi_examples=STATUS_EXAMPLES)],
        caller: Authenticated,
        uow: Uow,
    ) -> Application:
        command = ChangeStatus(application_id, body.to_status, body.reason, caller)
        return (await services.change_status(command, uow)).as_seen_by(caller)

    return router


def pipeline_router(postings: PostingViews, journeys: Journeys) -> APIRouter:
    router = APIRouter(tags=["applications"])

    @router.get(
        "/postings/{posting_id}/pipeline",
        summary="A posting's applications per status, and the median and p90 time spent in "
        "each (the posting's employer, or admin)",
        responses=route_responses(
            {
                403: "the caller is a candidate, or an employer of another org",
                404: "no posting with this id is known here (yet: postings arrive as events)",
            }
        ),
    )
    async def posting_pipeline(posting_id: str, caller: Authenticated) -> Pipeline:
        return await services.posting_pipeline(posting_id, caller, postings, journeys)

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
    Uow = Annotated[ErasureUnitOfWork, made_by(unit_of_work)]

    @router.post(
        "/candidates/{candidate_id}/erasure",
        status_code=202,
        summary="Erase a candidate's personal data in every service (the candidate, or admin)",
        responses=route_responses(
            {403: ERASURE_FORBIDDEN}, success=202, success_headers=(LOCATION,), write=True
        ),
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
        responses=route_responses(
            {403: ERASURE_FORBIDDEN, 404: "no erasure was requested for this candidate"}
        ),
    )
    async def get_erasure(candidate_id: str, caller: Authenticated, uow: Uow) -> ErasureStatus:
        return ErasureStatus.of(await services.get_erasure(candidate_id, caller, uow))

    return router

"""The applications use cases: apply, move through the workflow, read and list (triage); keep
the postings read model and the pipeline projection; and a candidate's erasure requests.

Each takes a command (or the event it handles) and the unit of work, runs the domain's rules,
and commits the aggregate with the events it records. They raise the service layer's errors
(NotFound, Forbidden, Conflict, ...), which entrypoints translate.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import structlog

from hirestream.applications.domain import (
    Application,
    ApplicationForm,
    ApplicationOrder,
    Confirmation,
    ErasureRequest,
    IllegalMove,
    Party,
    Pipeline,
    PostingNotOpen,
    PostingView,
    Step,
    WrongParty,
    pipeline_of,
)
from hirestream.shared.events.applications import ApplicationStatus
from hirestream.shared.events.privacy import ERASING_SERVICES, CandidateErased
from hirestream.shared.events.types import utc_now
from hirestream.shared.identity import Principal, Role, same_address
from hirestream.shared.service_layer.errors import Conflict, Forbidden, InvalidRequest, NotFound
from hirestream.shared.service_layer.idempotency import IdempotentRequest, new_id
from hirestream.shared.service_layer.unit_of_work import (
    AggregateStore,
    AlreadyStored,
    Relay,
    StaleVersion,
    StoredRequest,
    UnitOfWork,
)
from hirestream.shared.storage.pagination import Page

log = structlog.get_logger(__name__)

# How often a status change is tried again when a concurrent change moved the version under it.
MOVE_ATTEMPTS = 3


class ApplicationRepository(AggregateStore[Application], Protocol):
    async def get(self, application_id: str) -> Application | None: ...

    async def find_for(self, candidate_id: str, posting_id: str) -> Application | None: ...

    async def stored_request(self, application_id: str) -> StoredRequest | None: ...

    async def list(
        self,
        *,
        candidate_id: str | None = None,
        org: str | None = None,
        posting_id: str | None = None,
        status: ApplicationStatus | None = None,
        order: ApplicationOrder = ApplicationOrder.NEWEST,
        limit: int,
        cursor: str | None,
    ) -> Page[Application]: ...

    async def anonymise_candidate(self, candidate_id: str) -> int: ...

    async def anonymise_expired(self, cutoff: datetime) -> int: ...


class PostingViews(Protocol):
    async def get(self, posting_id: str) -> PostingView | None: ...

    async def apply(self, view: PostingView) -> bool: ...


class Journeys(Protocol):
    """The pipeline projection: each application's steps through the statuses."""

    async def record(self, steps: Sequence[Step]) -> None: ...

    async def journeys(self, posting_id: str) -> list[list[Step]]: ...


class ErasureRequests(AggregateStore[ErasureRequest], Protocol):
    async def latest_for(self, candidate_id: str) -> ErasureRequest | None: ...

    async def confirm(self, request_id: str, confirmation: Confirmation) -> None: ...


class ApplicationsUnitOfWork(UnitOfWork[Application]):
    def __init__(
        self,
        applications: ApplicationRepository,
        postings: PostingViews,
        relay: Relay,
        *,
        source: str,
    ) -> None:
        super().__init__(applications, relay, source=source)
        self.applications = applications
        self.postings = postings


class ErasureUnitOfWork(UnitOfWork[ErasureRequest]):
    def __init__(self, requests: ErasureRequests, relay: Relay, *, source: str) -> None:
        super().__init__(requests, relay, source=source)
        self.requests = requests


UnitOfWorkFactory = Callable[[], ApplicationsUnitOfWork]
ErasureUnitOfWorkFactory = Callable[[], ErasureUnitOfWork]


# ---------------------------------------------------------------------------- applying


@dataclass(frozen=True)
class SubmitApplication:
    posting_id: str
    form: ApplicationForm
    candidate_id: str
    verified_email: str | None  # the address the candidate's token vouches for
    idempotency: IdempotentRequest | None = None


@dataclass(frozen=True)
class Submitted:
    application: Application
    replayed: bool = False  # a retry of a request with the same Idempotency-Key


async def submit_application(command: SubmitApplication, uow: ApplicationsUnitOfWork) -> Submitted:
    if not same_address(command.form.email, command.verified_email):
        # The employer and our emails reach the candidate at this address: it must be theirs.
        raise InvalidRequest("the address must be the verified email of your token", field="email")
    posting = await uow.postings.get(command.posting_id)
    if posting is None:
        return await _earlier_or(
            command, uow, NotFound(f"posting {command.posting_id} does not exist")
        )
    try:
        application, submitted = Application.submit(
            command.form,
            application_id=new_id(command.idempotency),
            candidate_id=command.candidate_id,
            posting=posting,
            now=utc_now(),
        )
    except PostingNotOpen:
        # It may have been open for the first of these requests.
        return await _earlier_or(command, uow, Conflict("the posting is closed"))
    request = command.idempotency
    record = request.record(application.json_bytes()) if request else None
    uow.add(application, submitted, idempotency=record)
    try:
        await uow.commit()
    except AlreadyStored:
        existing = await uow.applications.find_for(command.candidate_id, command.posting_id)
        duplicate = (
            Conflict(
                f"you already applied to this posting: application {existing.application_id}",
                application_id=existing.application_id,
            )
            if existing is not None
            # The id derived from the key is taken by another posting's application: the
            # earlier request's answer is returned below, so this is only a fallback.
            else Conflict("this Idempotency-Key was used for another application")
        )
        return await _earlier_or(command, uow, duplicate)
    return Submitted(application)


async def _earlier_or(
    command: SubmitApplication, uow: ApplicationsUnitOfWork, refusal: Exception
) -> Submitted:
    """The first answer to an earlier request with this Idempotency-Key, else `refusal`. Looked
    up only when this request would not create the application: a retry's insert is refused on
    the id derived from the key, so a first request needs no lookup."""
    request = command.idempotency
    if request is not None:
        stored = await uow.applications.stored_request(request.aggregate_id)
        if stored is not None:
            first = request.first_response(stored.record)
            return Submitted(Application.model_validate_json(first), replayed=True)
    raise refusal


# ---------------------------------------------------------------------- reading and moving


async def get_application(
    application_id: str, caller: Principal, uow: ApplicationsUnitOfWork
) -> Application:
    application = await uow.applications.get(application_id)
    # Someone else's application is "not found": its existence is not the caller's business.
    if application is None or not application.visible_to(caller):
        raise NotFound(f"application {application_id} does not exist")
    return application


async def list_applications(
    caller: Principal,
    uow: ApplicationsUnitOfWork,
    *,
    posting_id: str | None,
    status: ApplicationStatus | None,
    limit: int,
    cursor: str | None,
    order: ApplicationOrder = ApplicationOrder.NEWEST,
) -> Page[Application]:
    """A candidate's own applications, an employer's org's, or an admin's all, in `order`."""
    if order.needs_posting and posting_id is None:
        raise InvalidRequest(
            f"sort={order} ranks one posting's applications: name posting_id", field="sort"
        )
    return await uow.applications.list(
        candidate_id=caller.user_id if caller.role is Role.CANDIDATE else None,
        org=caller.org if caller.role is Role.EMPLOYER else None,
        posting_id=posting_id,
        status=status,
        order=order,
        limit=limit,
        cursor=cursor,
    )


@dataclass(frozen=True)
class ChangeStatus:
    application_id: str
    to_status: ApplicationStatus
    reason: str | None
    caller: Principal


async def change_status(command: ChangeStatus, uow: ApplicationsUnitOfWork) -> Application:
    caller = command.caller
    party = Party.CANDIDATE if caller.role is Role.CANDIDATE else Party.EMPLOYER
    for _ in range(MOVE_ATTEMPTS):
        application = await get_application(command.application_id, caller, uow)
        try:
            moved, changed = application.move(
                command.to_status,
                by=party,
                user_id=caller.user_id,
                reason=command.reason,
                now=utc_now(),
            )
        except WrongParty as error:
            raise Forbidden(str(error)) from error
        except IllegalMove as error:
            allowed = [str(status) for status in error.allowed]
            raise Conflict(
                f"{error.current} cannot move to {error.target}; "
                f"allowed: {', '.join(allowed) or 'none (final status)'}",
                allowed_moves=allowed,
            ) from error
        uow.update(moved, changed, expected_version=application.version)
        try:
            await uow.commit()
        except StaleVersion:
            continue  # changed meanwhile: decide again on what is stored now
        return moved
    raise Conflict("the application keeps changing; try again", retry_after_s=1)


# ----------------------------------------------------------------------- the read model


async def record_posting(view: PostingView, postings: PostingViews) -> bool:
    """What a `posting.*` event says of a posting, into the read model (newer versions only)."""
    stored = await postings.apply(view)
    log.info("read_model.posting", posting_id=view.posting_id, version=view.version, stored=stored)
    return stored


# --------------------------------------------------------------------------- the pipeline


async def record_steps(steps: Sequence[Step], journeys: Journeys) -> None:
    """What `application.*` events say of applications' journeys, into the projection."""
    await journeys.record(steps)
    log.debug("pipeline.recorded", steps=len(steps))


async def posting_pipeline(
    posting_id: str, caller: Principal, postings: PostingViews, journeys: Journeys
) -> Pipeline:
    """The posting's applications per status and time spent in each: its employer's org or
    an admin. Postings are public, so another org's employer is refused, not told "not
    found"; a candidate is refused before anything is read."""
    if caller.role is Role.CANDIDATE:
        raise Forbidden("only the posting's employer or an admin may see its pipeline")
    posting = await postings.get(posting_id)
    if posting is None:
        raise NotFound(f"posting {posting_id} does not exist")
    if not caller.is_admin and caller.org != posting.org:
        raise Forbidden("only the posting's employer or an admin may see its pipeline")
    return pipeline_of(posting_id, await journeys.journeys(posting_id))


# ------------------------------------------------------------------------------- erasure


def _may_erase(candidate_id: str, caller: Principal) -> None:
    if not (caller.is_admin or (caller.role is Role.CANDIDATE and caller.user_id == candidate_id)):
        raise Forbidden("only the candidate themself, or an admin, may do this")


async def request_erasure(
    candidate_id: str, caller: Principal, uow: ErasureUnitOfWork
) -> ErasureRequest:
    """Ask every service to erase the candidate's personal data; one request at a time."""
    _may_erase(candidate_id, caller)
    latest = await uow.requests.latest_for(candidate_id)
    if latest is not None and not latest.complete:
        return latest  # under way
    request, requested = ErasureRequest.request(
        request_id=str(uuid.uuid4()),
        candidate_id=candidate_id,
        requested_by=caller.user_id,
        now=utc_now(),
    )
    uow.add(request, requested)
    await uow.commit()
    return request


async def get_erasure(
    candidate_id: str, caller: Principal, uow: ErasureUnitOfWork
) -> ErasureRequest:
    _may_erase(candidate_id, caller)
    latest = await uow.requests.latest_for(candidate_id)
    if latest is None:
        raise NotFound(f"no erasure was requested for candidate {candidate_id}")
    return latest


async def record_confirmation(erased: CandidateErased, requests: ErasureRequests) -> None:
    """One service's `candidate.erased`, added to its request."""
    if erased.service not in ERASING_SERVICES:
        log.warning("erasure.unknown_service", service=erased.service)
        return
    await requests.confirm(
        erased.request_id,
        Confirmation(
            service=erased.service,
            erased_at=erased.erased_at,
            anonymised=erased.anonymised,
            kept=erased.kept,
        ),
    )


async def anonymise_candidate(
    candidate_id: str, applications: ApplicationRepository
) -> dict[str, int]:
    return {"applications": await applications.anonymise_candidate(candidate_id)}


async def apply_retention(cutoff: datetime, applications: ApplicationRepository) -> int:
    """Anonymise the final applications that outlived the retention period."""
    anonymised = await applications.anonymise_expired(cutoff)
    if anonymised:
        log.info("retention.anonymised", applications=anonymised)
    return anonymised

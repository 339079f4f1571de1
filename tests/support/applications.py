"""Test support for the applications service (the integration tests' own helpers are in
`applications_integration.py`).

- Test data: forms, postings and applications in any status, the callers (principals), and the
  commands the routes make.
- In-memory fakes of its ports (`FakeApplications`, `FakePostingViews`, `FakeErasureRequests`,
  `FakeJourneys`), behaving as the MongoDB stores promise to, for unit tests of the use cases.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from hirestream.applications.domain import (
    Application,
    ApplicationForm,
    ApplicationOrder,
    Confirmation,
    ErasureRequest,
    Party,
    PostingView,
    Step,
)
from hirestream.applications.services import (
    ApplicationsUnitOfWork,
    ErasureUnitOfWork,
    SubmitApplication,
)
from hirestream.shared.events.applications import ApplicationStatus, Candidate, Match
from hirestream.shared.events.postings import (
    CloseReason,
    PostingClosed,
    PostingStatus,
)
from hirestream.shared.identity import Principal, Role
from hirestream.shared.messaging.outbox import OutboxEntry
from hirestream.shared.privacy import ERASED_EMAIL, ERASED_NAME
from hirestream.shared.service_layer.idempotency import IdempotentRequest, request_hash
from hirestream.shared.storage.pagination import Page
from tests.support.fakes import InMemoryAggregates, RecordingRelay

S = ApplicationStatus
SOURCE = "hirestream/applications"
SUBMITTED = "application.submitted"
STATUS_CHANGED = "application.status_changed"
POSTING_SKILLS = ["python", "kafka", "mongodb", "kubernetes"]

# ------------------------------------------------------------------------------ test data

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(hours=3)
ORG = "acme"
POSTING_ID = "6650f1c2e4b0a1b2c3d4e5f6"
APPLICATION_ID = "6650f1c2e4b0a1b2c3d4e600"
EMPLOYER_USER = "user-recruiter-ana"
CANDIDATE_USER = "cand-7f3a9c1e"
ADMIN_USER = "user-admin-root"

CANDIDATE = Principal(CANDIDATE_USER, Role.CANDIDATE)
EMPLOYER = Principal(EMPLOYER_USER, Role.EMPLOYER, org=ORG)
ADMIN = Principal(ADMIN_USER, Role.ADMIN)
OTHER_CANDIDATE = Principal("cand-0b1d2e3f", Role.CANDIDATE)
OTHER_EMPLOYER = Principal("user-recruiter-bo", Role.EMPLOYER, org="globex")

FINAL = (S.HIRED, S.REJECTED, S.WITHDRAWN)
NON_FINAL = (S.SUBMITTED, S.SCREENING, S.INTERVIEW, S.OFFER)
# The whole workflow (docs/api.md): every legal move and the one party that may make it.
LEGAL: dict[tuple[ApplicationStatus, ApplicationStatus], Party] = {
    (S.SUBMITTED, S.SCREENING): Party.EMPLOYER,
    (S.SCREENING, S.INTERVIEW): Party.EMPLOYER,
    (S.INTERVIEW, S.OFFER): Party.EMPLOYER,
    (S.OFFER, S.HIRED): Party.EMPLOYER,
    **{(status, S.REJECTED): Party.EMPLOYER for status in NON_FINAL},
    **{(status, S.WITHDRAWN): Party.CANDIDATE for status in NON_FINAL},
}
ALLOWED_FROM: dict[ApplicationStatus, set[ApplicationStatus]] = {
    current: {target for (source, target) in LEGAL if source is current} for current in S
}
ILLEGAL = [(current, target) for current in S for target in S if (current, target) not in LEGAL]


def pair_id(pair: tuple[ApplicationStatus, ApplicationStatus]) -> str:
    return f"{pair[0]}->{pair[1]}"


def party_of(target: ApplicationStatus) -> Party:
    return Party.CANDIDATE if target is S.WITHDRAWN else Party.EMPLOYER


def user_of(party: Party) -> str:
    return CANDIDATE_USER if party is Party.CANDIDATE else EMPLOYER_USER


def application_body(**changes: Any) -> dict[str, Any]:
    """What a candidate sends to apply, as JSON."""
    body: dict[str, Any] = {
        "name": "Maya Okafor",
        "email": "maya.okafor@example.com",
        "resume_url": "https://cdn.example.com/resumes/maya-okafor.pdf",
        "consent": {"processing": True},
        "skills": ["Python", " Kafka ", "PostgreSQL"],
        "cover_letter": "I have run Kafka pipelines in production for four years.",
    }
    body.update(changes)
    return body


def application_form(**changes: Any) -> ApplicationForm:
    return ApplicationForm.model_validate(application_body(**changes))


def open_posting(**changes: Any) -> PostingView:
    fields: dict[str, Any] = {
        "posting_id": POSTING_ID,
        "version": 1,
        "status": PostingStatus.OPEN,
        "org": ORG,
        "title": "Senior Backend Developer",
        "skills": POSTING_SKILLS,
        "contact_email": "hiring@acme.example",
        "updated_at": NOW,
    }
    fields.update(changes)
    return PostingView.model_validate(fields)


def closed_posting(posting_id: str = POSTING_ID, *, version: int = 2) -> PostingView:
    return PostingView.from_closed(
        PostingClosed(
            posting_id=posting_id,
            org=ORG,
            reason=CloseReason.FILLED,
            version=version,
            closed_at=NOW,
        )
    )


def application_in(
    status: ApplicationStatus,
    *,
    version: int = 4,
    application_id: str = APPLICATION_ID,
    candidate_id: str = CANDIDATE_USER,
    **changes: Any,
) -> Application:
    """An application as stored, in `status`: changes name any other field."""
    fields: dict[str, Any] = {
        "application_id": application_id,
        "posting_id": POSTING_ID,
        "org": ORG,
        "candidate": Candidate(
            candidate_id=candidate_id, name="Maya Okafor", email="maya.okafor@example.com"
        ),
        "resume_url": "https://cdn.example.com/resumes/maya-okafor.pdf",
        "cover_letter": "I have run Kafka pipelines in production for four years.",
        "skills": ["python", "kafka"],
        "match": Match(
            score=0.5, matched_skills=["python", "kafka"], missing_skills=["mongodb", "kubernetes"]
        ),
        "status": status,
        "version": version,
        "submitted_at": NOW,
        "updated_at": NOW,
    }
    fields.update(changes)
    return Application.model_validate(fields)


def submission(
    posting_id: str = POSTING_ID,
    candidate_id: str = CANDIDATE_USER,
    *,
    key: str | None = None,
    **form_changes: Any,
) -> SubmitApplication:
    """The command the apply route makes; with `key`, as under an Idempotency-Key, hashing
    what the route hashes (the posting and the form)."""
    form = application_form(**form_changes)
    request = None
    if key is not None:
        asked = {"posting_id": posting_id, "form": form.model_dump(mode="json")}
        request = IdempotentRequest(candidate_id, key, request_hash(asked))
    return SubmitApplication(posting_id, form, candidate_id, str(form.email), request)


# ---------------------------------------------------------------------------------- fakes


def _newest_first(application: Application) -> tuple[datetime, str]:
    return application.submitted_at, application.application_id


def _best_match_first(application: Application) -> tuple[float, str]:
    return application.match.score, application.application_id


class FakeApplications(InMemoryAggregates[Application]):
    """`ApplicationStore` in memory: one application per candidate and posting, lists newest
    first with a cursor, anonymisation. `concurrently` makes another writer change a stored
    application just before the next updates, as a concurrent request would."""

    def __init__(self, *applications: Application) -> None:
        super().__init__(
            lambda application: application.application_id,
            unique_key=lambda application: (
                application.candidate.candidate_id,
                application.posting_id,
            ),
        )
        self._meanwhile: list[Callable[[Application], Application]] = []
        for application in applications:
            self.put(application)

    def concurrently(self, change: Callable[[Application], Application], *, times: int = 1) -> None:
        """Before each of the next `times` updates, replace the stored application by
        `change(stored)` (a change another request made meanwhile)."""
        self._meanwhile += [change] * times

    async def update(
        self, aggregate: Application, outbox: Sequence[OutboxEntry], expected_version: int
    ) -> str:
        if self._meanwhile:
            change = self._meanwhile.pop(0)
            self.put(change(self.aggregates[aggregate.application_id]))
        return await super().update(aggregate, outbox, expected_version)

    async def find_for(self, candidate_id: str, posting_id: str) -> Application | None:
        for application in self.aggregates.values():
            if (application.candidate.candidate_id, application.posting_id) == (
                candidate_id,
                posting_id,
            ):
                return application
        return None

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
    ) -> Page[Application]:
        wanted = sorted(
            (
                application
                for application in self.aggregates.values()
                if candidate_id in (None, application.candidate.candidate_id)
                and org in (None, application.org)
                and posting_id in (None, application.posting_id)
                and status in (None, application.status)
            ),
            key=_best_match_first if order is ApplicationOrder.BEST_MATCH else _newest_first,
            reverse=True,
        )
        # The cursor is the last id returned: the fake's own, as opaque as the store's.
        if cursor is not None:
            after = [a.application_id for a in wanted].index(cursor) + 1
            wanted = wanted[after:]
        page = wanted[:limit]
        more = len(wanted) > limit
        return Page[Application](items=page, next_cursor=page[-1].application_id if more else None)

    async def anonymise_candidate(self, candidate_id: str) -> int:
        mine = [a for a in self.aggregates.values() if a.candidate.candidate_id == candidate_id]
        for application in mine:
            self._anonymise(application)
        return len(mine)

    async def anonymise_expired(self, cutoff: datetime) -> int:
        """As the store: final, last changed before `cutoff`, not yet anonymised, of a
        candidate who has not applied since `cutoff`."""
        stored = list(self.aggregates.values())
        returned = {a.candidate.candidate_id for a in stored if a.submitted_at >= cutoff}
        expired = [
            a
            for a in stored
            if a.status in FINAL
            and a.updated_at < cutoff
            and not a.anonymised
            and a.candidate.candidate_id not in returned
        ]
        for application in expired:
            self._anonymise(application)
        return len(expired)

    def _anonymise(self, application: Application) -> None:
        candidate = application.candidate.model_copy(
            update={"name": ERASED_NAME, "email": ERASED_EMAIL}
        )
        self.put(
            application.model_copy(
                update={
                    "candidate": candidate,
                    "resume_url": "",
                    "cover_letter": None,
                    "anonymised": True,
                }
            )
        )
        # The store erases the Idempotency-Key record too: it holds the first response.
        self.requests[application.application_id] = None


def moved_meanwhile(to_status: ApplicationStatus) -> Callable[[Application], Application]:
    """For `FakeApplications.concurrently`: another employer's request moves the application."""

    def change(application: Application) -> Application:
        moved, _ = application.move(
            to_status, by=Party.EMPLOYER, user_id="user-recruiter-bo", reason=None, now=LATER
        )
        return moved

    return change


def touched_meanwhile(application: Application) -> Application:
    """For `FakeApplications.concurrently`: another request changed the application."""
    return application.model_copy(update={"version": application.version + 1})


class FakePostingViews:
    """`PostingReadModel` in memory: a view is stored only over an older version, and a
    closing keeps the fields it does not carry."""

    def __init__(self, *views: PostingView) -> None:
        self.views: dict[str, PostingView] = {view.posting_id: view for view in views}

    async def get(self, posting_id: str) -> PostingView | None:
        return self.views.get(posting_id)

    async def apply(self, view: PostingView) -> bool:
        stored = self.views.get(view.posting_id)
        if stored is not None and stored.version >= view.version:
            return False
        known = stored.model_dump() if stored is not None else {}
        self.views[view.posting_id] = PostingView.model_validate(
            {**known, **view.fields_to_store(), "posting_id": view.posting_id}
        )
        return True


class FakeJourneys:
    """`PipelineProjection` in memory: a step per (application, version), set again alike."""

    def __init__(self) -> None:
        self.steps: dict[str, dict[int, Step]] = {}

    async def record(self, steps: Sequence[Step]) -> None:
        for step in steps:
            self.steps.setdefault(step.application_id, {})[step.version] = step

    async def journeys(self, posting_id: str) -> list[list[Step]]:
        return [
            list(steps.values())
            for steps in self.steps.values()
            if any(step.posting_id == posting_id for step in steps.values())
        ]


class FakeErasureRequests(InMemoryAggregates[ErasureRequest]):
    """`ErasureRequestStore` in memory."""

    def __init__(self, *requests: ErasureRequest) -> None:
        super().__init__(lambda request: request.request_id)
        for request in requests:
            self.put(request)

    async def latest_for(self, candidate_id: str) -> ErasureRequest | None:
        theirs = [r for r in self.aggregates.values() if r.candidate_id == candidate_id]
        return max(theirs, key=lambda request: request.requested_at, default=None)

    async def confirm(self, request_id: str, confirmation: Confirmation) -> None:
        request = self.aggregates.get(request_id)
        if request is None or confirmation in request.confirmations:
            return  # unknown: nothing to add to; a redelivery: added once ($addToSet)
        confirmations = [*request.confirmations, confirmation]
        self.put(request.model_copy(update={"confirmations": confirmations}))


def applications_unit_of_work(
    applications: FakeApplications, postings: FakePostingViews, relay: RecordingRelay
) -> ApplicationsUnitOfWork:
    return ApplicationsUnitOfWork(applications, postings, relay, source=SOURCE)


def erasure_unit_of_work(requests: FakeErasureRequests, relay: RecordingRelay) -> ErasureUnitOfWork:
    return ErasureUnitOfWork(requests, relay, source=SOURCE)


def open_posting_document(posting_id: str = "p1", *, version: int = 1) -> dict[str, Any]:
    """A posting as the read model's collection keeps it."""
    return {"_id": posting_id, "version": version, "status": "open", "org": ORG}


class OnePostingCollection:
    """A stand-in for the `postings_view` collection holding one posting document: counts
    reads, and can hold a read open (`read_gate`) to overlap it with a write."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.reads = 0
        self.read_gate: asyncio.Event | None = None

    async def find_one(self, query: dict[str, Any]) -> dict[str, Any] | None:
        self.reads += 1
        seen = dict(self.document)
        if self.read_gate is not None:
            await self.read_gate.wait()
        return seen if query["_id"] == seen["_id"] else None

    async def update_one(self, query: Any, update: dict[str, Any], upsert: bool) -> None:
        self.document = {**self.document, **update["$set"]}

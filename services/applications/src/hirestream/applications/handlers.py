"""Event entrypoint of the applications service: `posting.*` into the postings read model,
its own `application.*` into the pipeline projection, erasure requests, and the other services'
erasure confirmations.

`application.submitted`, the busy topic, reaches the projection a batch at a time: one bulk
write per batch, not per event.
"""

from __future__ import annotations

from collections.abc import Callable

from hirestream.applications import services
from hirestream.applications.domain import PostingView, Step
from hirestream.applications.services import (
    ApplicationRepository,
    ErasureRequests,
    Journeys,
    PostingViews,
)
from hirestream.shared.events.applications import (
    APPLICATION_STATUS_CHANGED,
    APPLICATION_SUBMITTED,
    ApplicationStatusChanged,
    ApplicationSubmitted,
)
from hirestream.shared.events.envelope import CloudEvent
from hirestream.shared.events.postings import (
    POSTING_CLOSED,
    POSTING_CREATED,
    POSTING_UPDATED,
    PostingClosed,
    PostingCreated,
    PostingUpdated,
)
from hirestream.shared.events.privacy import CANDIDATE_ERASED, CandidateErased
from hirestream.shared.messaging.subscriptions import Subscription
from hirestream.shared.privacy import Erasure, erasure_subscription
from hirestream.shared.service_layer.unit_of_work import UnitOfWork

READ_MODEL_GROUP = "applications.postings-read-model"
PRIVACY_GROUP = "applications.privacy"
ERASURE_STATUS_GROUP = "applications.erasure-status"
PIPELINE_GROUP = "applications.pipeline"
KEPT = ["status history", "timestamps", "match scores", "skills", "consent records"]


def subscriptions(
    postings: PostingViews,
    applications: ApplicationRepository,
    requests: ErasureRequests,
    erasures: Callable[[], UnitOfWork[Erasure]],
    journeys: Journeys,
) -> list[Subscription]:
    async def on_posting_created(event: CloudEvent[PostingCreated]) -> None:
        await services.record_posting(PostingView.from_snapshot(event.data), postings)

    async def on_posting_updated(event: CloudEvent[PostingUpdated]) -> None:
        await services.record_posting(PostingView.from_snapshot(event.data), postings)

    async def on_posting_closed(event: CloudEvent[PostingClosed]) -> None:
        await services.record_posting(PostingView.from_closed(event.data), postings)

    async def on_applications_submitted(events: list[CloudEvent[ApplicationSubmitted]]) -> None:
        await services.record_steps([Step.of(event.data) for event in events], journeys)

    async def on_status_changed(event: CloudEvent[ApplicationStatusChanged]) -> None:
        await services.record_steps([Step.of(event.data)], journeys)

    async def on_candidate_erased(event: CloudEvent[CandidateErased]) -> None:
        await services.record_confirmation(event.data, requests)

    async def anonymise(candidate_id: str) -> dict[str, int]:
        return await services.anonymise_candidate(candidate_id, applications)

    return [
        Subscription(POSTING_CREATED, READ_MODEL_GROUP, on_posting_created),
        Subscription(POSTING_UPDATED, READ_MODEL_GROUP, on_posting_updated),
        Subscription(POSTING_CLOSED, READ_MODEL_GROUP, on_posting_closed),
        erasure_subscription(
            PRIVACY_GROUP, erasures, service="applications", anonymise=anonymise, kept=KEPT
        ),
        Subscription(CANDIDATE_ERASED, ERASURE_STATUS_GROUP, on_candidate_erased),
        Subscription(
            APPLICATION_SUBMITTED,
            PIPELINE_GROUP,
            on_applications_submitted,
            batch=True,
            gather_ms=500,
        ),
        Subscription(APPLICATION_STATUS_CHANGED, PIPELINE_GROUP, on_status_changed),
    ]

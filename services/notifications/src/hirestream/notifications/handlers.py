"""Event entrypoint of the notifications service: each event type to its use case.

`application.submitted`, the busy topic, is handled a batch at a time: a few database commands
per batch, not per event (ADR 0005).
"""

from __future__ import annotations

from collections.abc import Callable

from hirestream.notifications import services
from hirestream.notifications.services import NotificationsUnitOfWork
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
    PostingClosed,
    PostingCreated,
)
from hirestream.shared.messaging.subscriptions import Subscription
from hirestream.shared.privacy import Erasure, erasure_subscription
from hirestream.shared.service_layer.unit_of_work import UnitOfWork

GROUP = "notifications"
PRIVACY_GROUP = "notifications.privacy"
KEPT = ["notification counts and kinds", "delivery outcomes and attempts", "preferences"]


def subscriptions(
    unit_of_work: Callable[[], NotificationsUnitOfWork],
    erasures: Callable[[], UnitOfWork[Erasure]],
) -> list[Subscription]:
    async def on_posting_created(event: CloudEvent[PostingCreated]) -> None:
        await services.notify_posting_created(event, unit_of_work())

    async def on_posting_closed(event: CloudEvent[PostingClosed]) -> None:
        await services.notify_posting_closed(event, unit_of_work())

    async def on_applications_submitted(events: list[CloudEvent[ApplicationSubmitted]]) -> None:
        await services.notify_applications_submitted(events, unit_of_work())

    async def on_status_changed(event: CloudEvent[ApplicationStatusChanged]) -> None:
        await services.notify_status_changed(event, unit_of_work())

    async def anonymise(candidate_id: str) -> dict[str, int]:
        return await services.anonymise_candidate(candidate_id, unit_of_work())

    return [
        erasure_subscription(
            PRIVACY_GROUP, erasures, service="notifications", anonymise=anonymise, kept=KEPT
        ),
        Subscription(POSTING_CREATED, GROUP, on_posting_created),
        Subscription(POSTING_CLOSED, GROUP, on_posting_closed),
        Subscription(APPLICATION_SUBMITTED, GROUP, on_applications_submitted, batch=True),
        Subscription(APPLICATION_STATUS_CHANGED, GROUP, on_status_changed),
    ]

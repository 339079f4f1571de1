"""The notifications HTTP API: inbox, preferences, job alerts and webhooks."""

from typing import Annotated, Any, Self

from fastapi import APIRouter, Body, Depends, Query, Response
from pydantic import BaseModel, ConfigDict

from hirestream.notifications import services
from hirestream.notifications.domain import (
    Alert,
    AlertCriteria,
    DeliveryAttempt,
    Notification,
    Preferences,
    Webhook,
    WebhookRegistration,
)
from hirestream.notifications.services import NotificationsUnitOfWork
from hirestream.shared.events.notifications import Channel
from hirestream.shared.events.types import UtcDateTime
from hirestream.shared.identity import Principal, Role
from hirestream.shared.storage.pagination import Page
from hirestream.shared.web.auth import Authenticated, require_role
from hirestream.shared.web.openapi import LOCATION, route_responses

Candidate = Annotated[Principal, require_role(Role.CANDIDATE)]
EmployerOrAdmin = Annotated[Principal, require_role(Role.EMPLOYER, Role.ADMIN)]
Limit = Annotated[int, Query(ge=1, le=100)]
Cursor = Annotated[str | None, Query(max_length=200)]

INVALID_PAGE = "invalid limit or cursor, named in `errors`"
NOT_CANDIDATE = "the caller is not a candidate"
NOT_EMPLOYER_OR_ADMIN = "the caller is neither an employer nor an admin"
WEBHOOK_NOT_FOUND = "no webhook with this id among the caller's"

# One example per request body, shown by /docs and sent by schemathesis' examples phase.
PREFERENCES_EXAMPLES: dict[str, Any] = {
    "quieter": {
        "summary": "New postings in the app only; applications by email too",
        "value": {
            "channels": {
                "posting.created": ["in_app"],
                "application.submitted": ["in_app", "email"],
            }
        },
    }
}
ALERT_EXAMPLES: dict[str, Any] = {
    "kafka-seattle": {
        "summary": "Kafka jobs in Seattle, paying at least 150,000.00 a year",
        "value": {"skills": ["kafka"], "city": "Seattle", "country": "US", "min_salary": 15000000},
    }
}
WEBHOOK_EXAMPLES: dict[str, Any] = {
    "applications": {
        "summary": "New applications and status changes, signed with the secret",
        "value": {
            "url": "https://hooks.acme.example/hirestream",
            "event_types": ["application.submitted", "application.status_changed"],
            "secret": "whsec-4f9c2a7e1b8d3f60",
        },
    }
}


class InboxItem(BaseModel):
    """An inbox item as `GET /notifications` shows it."""

    notification_id: str
    kind: str
    subject: str
    title: str
    body: str
    created_at: UtcDateTime
    read: bool

    @classmethod
    def of(cls, notification: Notification) -> Self:
        return cls.model_validate(notification, from_attributes=True)


class PreferencesView(BaseModel):
    """The channels per event kind, defaults filled in."""

    channels: dict[str, list[Channel]]

    @classmethod
    def of(cls, preferences: Preferences) -> Self:
        return cls(channels=preferences.effective())


class AlertView(AlertCriteria):
    model_config = ConfigDict(extra="ignore", frozen=True)

    alert_id: str
    created_at: UtcDateTime

    @classmethod
    def of(cls, alert: Alert) -> Self:
        return cls.model_validate(alert.model_dump())


class WebhookView(BaseModel):
    """A registration as shown back: never with its secret."""

    webhook_id: str
    url: str
    event_types: list[str]
    created_at: UtcDateTime

    @classmethod
    def of(cls, webhook: Webhook) -> Self:
        return cls.model_validate(webhook, from_attributes=True)


class Delivery(BaseModel):
    delivery_id: str
    event_id: str
    event_type: str
    status: str
    attempts: list[DeliveryAttempt]
    created_at: UtcDateTime

    @classmethod
    def of(cls, notification: Notification) -> Self:
        return cls(
            delivery_id=notification.notification_id,
            event_id=notification.source_event_id,
            event_type=notification.kind,
            status=notification.status.value,
            attempts=notification.attempts,
            created_at=notification.created_at,
        )


def notifications_router(
    unit_of_work: services.UnitOfWorkFactory, *, allow_private_webhooks: bool
) -> APIRouter:
    router = APIRouter()
    Uow = Annotated[NotificationsUnitOfWork, Depends(unit_of_work)]

    @router.get(
        "/notifications",
        tags=["inbox"],
        summary="The caller's inbox, newest first",
        responses=route_responses({422: INVALID_PAGE}),
    )
    async def inbox(
        caller: Authenticated, uow: Uow, limit: Limit = 20, cursor: Cursor = None
    ) -> Page[InboxItem]:
        return (await services.inbox(caller, uow, limit=limit, cursor=cursor)).map(InboxItem.of)

    @router.post(
        "/notifications/{notification_id}/read",
        tags=["inbox"],
        summary="Mark one as read",
        responses=route_responses(
            {404: "no notification with this id in the caller's inbox"}, write=True
        ),
    )
    async def mark_read(notification_id: str, caller: Authenticated, uow: Uow) -> InboxItem:
        return InboxItem.of(await services.mark_read(caller, notification_id, uow))

    @router.get(
        "/preferences",
        tags=["preferences"],
        summary="Channels per event kind",
        responses=route_responses(),
    )
    async def get_preferences(caller: Authenticated, uow: Uow) -> PreferencesView:
        return PreferencesView.of(await services.preferences_of(caller, uow))

    @router.put(
        "/preferences",
        tags=["preferences"],
        summary="Choose channels per event kind",
        responses=route_responses(
            {422: "unknown event kinds or channels, named in `errors`"}, write=True, json_body=True
        ),
    )
    async def put_preferences(
        body: Annotated[Preferences, Body(openapi_examples=PREFERENCES_EXAMPLES)],
        caller: Authenticated,
        uow: Uow,
    ) -> PreferencesView:
        return PreferencesView.of(await services.choose_preferences(caller, body, uow))

    @router.post(
        "/alerts",
        status_code=201,
        tags=["alerts"],
        summary="Save a job search",
        responses=route_responses(
            {
                403: NOT_CANDIDATE,
                422: "invalid criteria, named in `errors`, or an email other than the token's "
                "verified one",
            },
            success=201,
            success_headers=(LOCATION,),
            write=True,
            json_body=True,
        ),
    )
    async def create_alert(
        body: Annotated[AlertCriteria, Body(openapi_examples=ALERT_EXAMPLES)],
        candidate: Candidate,
        uow: Uow,
        response: Response,
    ) -> AlertView:
        alert = await services.save_alert(candidate, body, uow)
        response.headers["Location"] = f"/alerts/{alert.alert_id}"
        return AlertView.of(alert)

    @router.get(
        "/alerts",
        tags=["alerts"],
        summary="The caller's saved job searches",
        responses=route_responses({403: NOT_CANDIDATE, 422: INVALID_PAGE}),
    )
    async def list_alerts(
        candidate: Candidate, uow: Uow, limit: Limit = 20, cursor: Cursor = None
    ) -> Page[AlertView]:
        page = await services.alerts_of(candidate, uow, limit=limit, cursor=cursor)
        return page.map(AlertView.of)

    @router.delete(
        "/alerts/{alert_id}",
        status_code=204,
        tags=["alerts"],
        summary="Delete one",
        responses=route_responses(
            {403: NOT_CANDIDATE, 404: "no alert with this id among the caller's"},
            success=204,
            write=True,
        ),
    )
    async def delete_alert(alert_id: str, candidate: Candidate, uow: Uow) -> Response:
        await services.delete_alert(candidate, alert_id, uow)
        return Response(status_code=204)

    @router.post(
        "/webhooks",
        status_code=201,
        tags=["webhooks"],
        summary="Register a webhook",
        responses=route_responses(
            {
                403: NOT_EMPLOYER_OR_ADMIN,
                422: "invalid fields, named in `errors`, or a URL that is not https or does not "
                "resolve to public addresses only",
            },
            success=201,
            success_headers=(LOCATION,),
            write=True,
            json_body=True,
        ),
    )
    async def register_webhook(
        body: Annotated[WebhookRegistration, Body(openapi_examples=WEBHOOK_EXAMPLES)],
        caller: EmployerOrAdmin,
        uow: Uow,
        response: Response,
    ) -> WebhookView:
        webhook = await services.register_webhook(
            caller, body, uow, allow_private=allow_private_webhooks
        )
        response.headers["Location"] = f"/webhooks/{webhook.webhook_id}"
        return WebhookView.of(webhook)

    @router.get(
        "/webhooks",
        tags=["webhooks"],
        summary="The caller's webhooks",
        responses=route_responses({403: NOT_EMPLOYER_OR_ADMIN, 422: INVALID_PAGE}),
    )
    async def list_webhooks(
        caller: EmployerOrAdmin, uow: Uow, limit: Limit = 20, cursor: Cursor = None
    ) -> Page[WebhookView]:
        page = await services.webhooks_of(caller, uow, limit=limit, cursor=cursor)
        return page.map(WebhookView.of)

    @router.delete(
        "/webhooks/{webhook_id}",
        status_code=204,
        tags=["webhooks"],
        summary="Delete one",
        responses=route_responses(
            {403: NOT_EMPLOYER_OR_ADMIN, 404: WEBHOOK_NOT_FOUND}, success=204, write=True
        ),
    )
    async def delete_webhook(webhook_id: str, caller: EmployerOrAdmin, uow: Uow) -> Response:
        await services.delete_webhook(caller, webhook_id, uow)
        return Response(status_code=204)

    @router.get(
        "/webhooks/{webhook_id}/deliveries",
        tags=["webhooks"],
        summary="Every delivery to a webhook, newest first, with each attempt",
        responses=route_responses(
            {403: NOT_EMPLOYER_OR_ADMIN, 404: WEBHOOK_NOT_FOUND, 422: INVALID_PAGE}
        ),
    )
    async def list_deliveries(
        webhook_id: str, caller: EmployerOrAdmin, uow: Uow, limit: Limit = 20, cursor: Cursor = None
    ) -> Page[Delivery]:
        page = await services.deliveries_of(caller, webhook_id, uow, limit=limit, cursor=cursor)
        return page.map(Delivery.of)

    return router

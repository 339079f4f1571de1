"""The notifications HTTP API: inbox, preferences, job alerts and webhooks."""

from typing import Annotated, Self

from fastapi import APIRouter, Depends, Query, Response
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

Candidate = Annotated[Principal, require_role(Role.CANDIDATE)]
EmployerOrAdmin = Annotated[Principal, require_role(Role.EMPLOYER, Role.ADMIN)]
Limit = Annotated[int, Query(ge=1, le=100)]
Cursor = Annotated[str | None, Query(max_length=200)]


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

    @router.get("/notifications", tags=["inbox"], summary="The caller's inbox, newest first")
    async def inbox(
        caller: Authenticated, uow: Uow, limit: Limit = 20, cursor: Cursor = None
    ) -> Page[InboxItem]:
        return (await services.inbox(caller, uow, limit=limit, cursor=cursor)).map(InboxItem.of)

    @router.post(
        "/notifications/{notification_id}/read", tags=["inbox"], summary="Mark one as read"
    )
    async def mark_read(notification_id: str, caller: Authenticated, uow: Uow) -> InboxItem:
        return InboxItem.of(await services.mark_read(caller, notification_id, uow))

    @router.get("/preferences", tags=["preferences"], summary="Channels per event kind")
    async def get_preferences(caller: Authenticated, uow: Uow) -> PreferencesView:
        return PreferencesView.of(await services.preferences_of(caller, uow))

    @router.put("/preferences", tags=["preferences"], summary="Choose channels per event kind")
    async def put_preferences(
        body: Preferences, caller: Authenticated, uow: Uow
    ) -> PreferencesView:
        return PreferencesView.of(await services.choose_preferences(caller, body, uow))

    @router.post("/alerts", status_code=201, tags=["alerts"], summary="Save a job search")
    async def create_alert(
        body: AlertCriteria, candidate: Candidate, uow: Uow, response: Response
    ) -> AlertView:
        alert = await services.save_alert(candidate, body, uow)
        response.headers["Location"] = f"/alerts/{alert.alert_id}"
        return AlertView.of(alert)

    @router.get("/alerts", tags=["alerts"], summary="The caller's saved job searches")
    async def list_alerts(
        candidate: Candidate, uow: Uow, limit: Limit = 20, cursor: Cursor = None
    ) -> Page[AlertView]:
        page = await services.alerts_of(candidate, uow, limit=limit, cursor=cursor)
        return page.map(AlertView.of)

    @router.delete("/alerts/{alert_id}", status_code=204, tags=["alerts"], summary="Delete one")
    async def delete_alert(alert_id: str, candidate: Candidate, uow: Uow) -> Response:
        await services.delete_alert(candidate, alert_id, uow)
        return Response(status_code=204)

    @router.post("/webhooks", status_code=201, tags=["webhooks"], summary="Register a webhook")
    async def register_webhook(
        body: WebhookRegistration, caller: EmployerOrAdmin, uow: Uow, response: Response
    ) -> WebhookView:
        webhook = await services.register_webhook(
            caller, body, uow, allow_private=allow_private_webhooks
        )
        response.headers["Location"] = f"/webhooks/{webhook.webhook_id}"
        return WebhookView.of(webhook)

    @router.get("/webhooks", tags=["webhooks"], summary="The caller's webhooks")
    async def list_webhooks(
        caller: EmployerOrAdmin, uow: Uow, limit: Limit = 20, cursor: Cursor = None
    ) -> Page[WebhookView]:
        page = await services.webhooks_of(caller, uow, limit=limit, cursor=cursor)
        return page.map(WebhookView.of)

    @router.delete(
        "/webhooks/{webhook_id}", status_code=204, tags=["webhooks"], summary="Delete one"
    )
    async def delete_webhook(webhook_id: str, caller: EmployerOrAdmin, uow: Uow) -> Response:
        await services.delete_webhook(caller, webhook_id, uow)
        return Response(status_code=204)

    @router.get(
        "/webhooks/{webhook_id}/deliveries",
        tags=["webhooks"],
        summary="Every delivery to a webhook, newest first, with each attempt",
    )
    async def list_deliveries(
        webhook_id: str, caller: EmployerOrAdmin, uow: Uow, limit: Limit = 20, cursor: Cursor = None
    ) -> Page[Delivery]:
        page = await services.deliveries_of(caller, webhook_id, uow, limit=limit, cursor=cursor)
        return page.map(Delivery.of)

    return router

"""The notifications HTTP API: inbox, preferences, job alerts and webhooks."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict

from hirestream.notifications.delivery import UnsafeWebhookUrl, check_webhook_url
from hirestream.notifications.domain import (
    AlertCriteria,
    NotificationView,
    Preferences,
    WebhookRegistration,
    inbox_recipient,
)
from hirestream.notifications.store import (
    AlertStore,
    NotificationStore,
    PreferenceStore,
    WebhookStore,
)
from hirestream.shared.events.notifications import Channel
from hirestream.shared.events.types import UtcDateTime
from hirestream.shared.web.auth import Authenticated, Principal, Role, require_role
from hirestream.shared.web.problems import Problem

Candidate = Annotated[Principal, require_role(Role.CANDIDATE)]
EmployerOrAdmin = Annotated[Principal, require_role(Role.EMPLOYER, Role.ADMIN)]
Limit = Annotated[int, Query(ge=1, le=100)]
Cursor = Annotated[str | None, Query(max_length=200)]


class NotificationPage(BaseModel):
    items: list[NotificationView]
    next_cursor: str | None


class PreferencesView(BaseModel):
    """The channels per event kind, defaults filled in."""

    channels: dict[str, list[Channel]]


class Alert(AlertCriteria):
    model_config = ConfigDict(extra="ignore", frozen=True)  # stored fields beyond the criteria

    alert_id: str
    created_at: UtcDateTime


class Webhook(BaseModel):
    """A registration as shown back: never with its secret."""

    webhook_id: str
    url: str
    event_types: list[str]
    created_at: UtcDateTime


class AlertPage(BaseModel):
    items: list[Alert]
    next_cursor: str | None


class WebhookPage(BaseModel):
    items: list[Webhook]
    next_cursor: str | None


class DeliveryAttempt(BaseModel):
    number: int
    at: UtcDateTime
    ok: bool
    status_code: int | None = None
    error: str | None = None
    duration_ms: float | None = None


class Delivery(BaseModel):
    delivery_id: str
    event_id: str
    event_type: str
    status: str
    attempts: list[DeliveryAttempt]
    created_at: UtcDateTime


class DeliveryPage(BaseModel):
    items: list[Delivery]
    next_cursor: str | None


def _webhook_owner(caller: Principal) -> str:
    # An employer's webhooks belong to its org (any recruiter of the org manages them).
    return f"org:{caller.org}" if caller.role is Role.EMPLOYER else f"user:{caller.user_id}"


def _alert(document: dict[str, Any]) -> Alert:
    return Alert.model_validate({**document, "alert_id": str(document["_id"])})


def _webhook(document: dict[str, Any]) -> Webhook:
    return Webhook.model_validate({**document, "webhook_id": str(document["_id"])})


def notifications_router(
    notifications: NotificationStore,
    preferences: PreferenceStore,
    alerts: AlertStore,
    webhooks: WebhookStore,
    *,
    allow_private_webhooks: bool,
) -> APIRouter:
    router = APIRouter()

    def recipient_of(caller: Principal) -> str:
        return inbox_recipient(caller.role.value, caller.user_id, caller.org)

    @router.get("/notifications", tags=["inbox"], summary="The caller's inbox, newest first")
    async def inbox(
        caller: Authenticated, limit: Limit = 20, cursor: Cursor = None
    ) -> NotificationPage:
        items, next_cursor = await notifications.inbox(
            recipient_of(caller), limit=limit, cursor=cursor
        )
        return NotificationPage(items=items, next_cursor=next_cursor)

    @router.post(
        "/notifications/{notification_id}/read", tags=["inbox"], summary="Mark one as read"
    )
    async def mark_read(notification_id: str, caller: Authenticated) -> NotificationView:
        marked = await notifications.mark_read(recipient_of(caller), notification_id)
        if marked is None:
            raise Problem(404, f"notification {notification_id} is not in your inbox")
        return marked

    @router.get("/preferences", tags=["preferences"], summary="Channels per event kind")
    async def get_preferences(caller: Authenticated) -> PreferencesView:
        chosen = await preferences.get(recipient_of(caller))
        return PreferencesView(channels=chosen.effective())

    @router.put("/preferences", tags=["preferences"], summary="Choose channels per event kind")
    async def put_preferences(body: Preferences, caller: Authenticated) -> PreferencesView:
        await preferences.put(recipient_of(caller), body)
        return PreferencesView(channels=body.effective())

    @router.post("/alerts", status_code=201, tags=["alerts"], summary="Save a job search")
    async def create_alert(body: AlertCriteria, candidate: Candidate, response: Response) -> Alert:
        document = await alerts.create(candidate.user_id, body)
        response.headers["Location"] = f"/alerts/{document['_id']}"
        return _alert(document)

    @router.get("/alerts", tags=["alerts"], summary="The caller's saved job searches")
    async def list_alerts(
        candidate: Candidate, limit: Limit = 20, cursor: Cursor = None
    ) -> AlertPage:
        documents, next_cursor = await alerts.of_candidate(
            candidate.user_id, limit=limit, cursor=cursor
        )
        return AlertPage(items=[_alert(d) for d in documents], next_cursor=next_cursor)

    @router.delete("/alerts/{alert_id}", status_code=204, tags=["alerts"], summary="Delete one")
    async def delete_alert(alert_id: str, candidate: Candidate) -> Response:
        if not await alerts.delete(candidate.user_id, alert_id):
            raise Problem(404, f"alert {alert_id} does not exist")
        return Response(status_code=204)

    @router.post("/webhooks", status_code=201, tags=["webhooks"], summary="Register a webhook")
    async def register_webhook(
        body: WebhookRegistration, caller: EmployerOrAdmin, response: Response
    ) -> Webhook:
        try:
            await check_webhook_url(body.url, allow_private=allow_private_webhooks)
        except UnsafeWebhookUrl as error:
            raise Problem(
                422, f"url: {error}", errors=[{"field": "url", "message": str(error)}]
            ) from error
        org = caller.org if caller.role is Role.EMPLOYER else None
        document = await webhooks.create(_webhook_owner(caller), org, body)
        response.headers["Location"] = f"/webhooks/{document['_id']}"
        return _webhook(document)

    @router.get("/webhooks", tags=["webhooks"], summary="The caller's webhooks")
    async def list_webhooks(
        caller: EmployerOrAdmin, limit: Limit = 20, cursor: Cursor = None
    ) -> WebhookPage:
        documents, next_cursor = await webhooks.of_owner(
            _webhook_owner(caller), limit=limit, cursor=cursor
        )
        return WebhookPage(items=[_webhook(d) for d in documents], next_cursor=next_cursor)

    @router.delete(
        "/webhooks/{webhook_id}", status_code=204, tags=["webhooks"], summary="Delete one"
    )
    async def delete_webhook(webhook_id: str, caller: EmployerOrAdmin) -> Response:
        if not await webhooks.delete(_webhook_owner(caller), webhook_id):
            raise Problem(404, f"webhook {webhook_id} does not exist")
        return Response(status_code=204)

    @router.get(
        "/webhooks/{webhook_id}/deliveries",
        tags=["webhooks"],
        summary="Every delivery to a webhook, newest first, with each attempt",
    )
    async def list_deliveries(
        webhook_id: str, caller: EmployerOrAdmin, limit: Limit = 20, cursor: Cursor = None
    ) -> DeliveryPage:
        if await webhooks.get(_webhook_owner(caller), webhook_id) is None:
            raise Problem(404, f"webhook {webhook_id} does not exist")
        documents, next_cursor = await notifications.deliveries(
            webhook_id, limit=limit, cursor=cursor
        )
        items = [
            Delivery(
                delivery_id=document["_id"],
                event_id=document["source_event_id"],
                event_type=document["kind"],
                status=document["status"],
                attempts=[DeliveryAttempt.model_validate(a) for a in document.get("attempts", [])],
                created_at=document["created_at"],
            )
            for document in documents
        ]
        return DeliveryPage(items=items, next_cursor=next_cursor)

    return router

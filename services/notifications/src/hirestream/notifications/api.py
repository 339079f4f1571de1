"""The notifications HTTP API: inbox, preferences, unsubscribe, job alerts and webhooks.

Every route needs a bearer token except `POST /unsubscribe`: mail apps call it for the person
who clicked their unsubscribe button, without a login, and its signed token is what authorises
it (`PUBLIC_ROUTES`; tests/security/test_authorization_matrix.py plays it without a token).
"""

from datetime import timedelta
from typing import Annotated, Any, Self

from fastapi import APIRouter, Body, Query, Response
from pydantic import BaseModel, ConfigDict

from hirestream.notifications import services
from hirestream.notifications.domain import (
    Alert,
    AlertCriteria,
    DeliveryAttempt,
    Notification,
    Preferences,
    SecretRotation,
    UnsubscribeLinks,
    UnsubscribeScope,
    Webhook,
    WebhookRegistration,
)
from hirestream.notifications.services import NotificationsUnitOfWork, PingResult, WebhookPoster
from hirestream.shared.events.notifications import Channel
from hirestream.shared.events.types import UtcDateTime, utc_now
from hirestream.shared.identity import Principal, Role
from hirestream.shared.storage.pagination import Page
from hirestream.shared.web.auth import Authenticated, require_role
from hirestream.shared.web.dependencies import made_by
from hirestream.shared.web.openapi import LOCATION, route_responses

Candidate = Annotated[Principal, require_role(Role.CANDIDATE)]
EmployerOrAdmin = Annotated[Principal, require_role(Role.EMPLOYER, Role.ADMIN)]
Limit = Annotated[int, Query(ge=1, le=100)]
Cursor = Annotated[str | None, Query(max_length=200)]
UnreadOnly = Annotated[bool, Query(description="only the items not yet marked read")]
UnsubscribeToken = Annotated[
    str, Query(min_length=1, max_length=2000, description="the token of the email's link")
]

# Routes without a bearer token, by design: their own credential authorises them.
PUBLIC_ROUTES = frozenset({("POST", "/unsubscribe")})

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


ROTATION_EXAMPLES: dict[str, Any] = {
    "rotate": {
        "summary": "A new secret; the former one keeps signing for WEBHOOK_ROTATION_OVERLAP_S",
        "value": {"secret": "whsec-8d1e5b3c9a7f2064"},
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


class UnreadCount(BaseModel):
    unread: int


class MarkedRead(BaseModel):
    marked_read: int


class Unsubscribed(BaseModel):
    """What the token turned off: email of this kind (the other channels stay as chosen)."""

    kind: str
    email: bool = False

    @classmethod
    def of(cls, scope: UnsubscribeScope) -> Self:
        return cls(kind=scope.kind)


class WebhookView(BaseModel):
    """A registration as shown back: never with its secrets."""

    webhook_id: str
    url: str
    event_types: list[str]
    created_at: UtcDateTime
    # After a rotation: until when the former secret still signs deliveries, besides the new.
    previous_secret_valid_until: UtcDateTime | None = None

    @classmethod
    def of(cls, webhook: Webhook) -> Self:
        return cls(
            webhook_id=webhook.webhook_id,
            url=webhook.url,
            event_types=webhook.event_types,
            created_at=webhook.created_at,
            previous_secret_valid_until=webhook.previous_valid_until(utc_now()),
        )


class Ping(BaseModel):
    """How the receiver answered the test event."""

    event_id: str
    ok: bool
    status_code: int | None
    error: str | None
    duration_ms: float | None

    @classmethod
    def of(cls, result: PingResult) -> Self:
        attempt = result.attempt
        return cls(
            event_id=result.event_id,
            ok=attempt.ok,
            status_code=attempt.status_code,
            error=attempt.error,
            duration_ms=attempt.duration_ms,
        )


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
    unit_of_work: services.UnitOfWorkFactory,
    *,
    allow_private_webhooks: bool,
    unsubscribe_links: UnsubscribeLinks,
    webhook_poster: WebhookPoster,
    secret_overlap: timedelta,
    redelivery_lease: timedelta,
) -> APIRouter:
    router = APIRouter()
    Uow = Annotated[NotificationsUnitOfWork, made_by(unit_of_work)]

    @router.get(
        "/notifications",
        tags=["inbox"],
        summary="The caller's inbox, newest first (`unread=true`: the unread items only)",
        responses=route_responses({422: INVALID_PAGE}),
    )
    async def inbox(
        caller: Authenticated,
        uow: Uow,
        limit: Limit = 20,
        cursor: Cursor = None,
        unread: UnreadOnly = False,
    ) -> Page[InboxItem]:
        page = await services.inbox(caller, uow, limit=limit, cursor=cursor, unread_only=unread)
        return page.map(InboxItem.of)

    @router.get(
        "/notifications/unread-count",
        tags=["inbox"],
        summary="How many items of the caller's inbox are unread",
        responses=route_responses(),
    )
    async def unread_count(caller: Authenticated, uow: Uow) -> UnreadCount:
        return UnreadCount(unread=await services.unread_count(caller, uow))

    @router.post(
        "/notifications/read-all",
        tags=["inbox"],
        summary="Mark every item of the caller's inbox read; says how many were unread",
        responses=route_responses(write=True),
    )
    async def mark_all_read(caller: Authenticated, uow: Uow) -> MarkedRead:
        return MarkedRead(marked_read=await services.mark_all_read(caller, uow))

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
        "/unsubscribe",
        tags=["preferences"],
        summary="One-click unsubscribe (RFC 8058): no login, the link's signed token decides",
        description="The URL of an email's `List-Unsubscribe` header. Turns email of that "
        "email's kind off for its recipient; the other channels stay as they were. Needs no "
        "bearer token (mail apps send it): the token is signed by the service and expires "
        "(`UNSUBSCRIBE_TOKEN_TTL_S`). Sending it again changes nothing more.",
        responses=route_responses(
            {422: "the token is missing, malformed, changed or expired (named in `errors`)"},
            authenticated=False,
            write=True,
        ),
    )
    async def unsubscribe(token: UnsubscribeToken, uow: Uow) -> Unsubscribed:
        scope = await services.unsubscribe(token, uow, links=unsubscribe_links)
        return Unsubscribed.of(scope)

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

    @router.post(
        "/webhooks/{webhook_id}/ping",
        tags=["webhooks"],
        summary="Send a signed `webhook.ping` now; answers with the receiver's status",
        responses=route_responses({403: NOT_EMPLOYER_OR_ADMIN, 404: WEBHOOK_NOT_FOUND}, write=True),
    )
    async def ping_webhook(webhook_id: str, caller: EmployerOrAdmin, uow: Uow) -> Ping:
        result = await services.ping_webhook(caller, webhook_id, uow, poster=webhook_poster)
        return Ping.of(result)

    @router.post(
        "/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver",
        tags=["webhooks"],
        summary="Send a failed delivery again (the same event id), recorded as a new attempt",
        responses=route_responses(
            {
                403: NOT_EMPLOYER_OR_ADMIN,
                404: "no webhook with this id among the caller's, or no such delivery of it",
                409: "the delivery has not failed (it is pending, being sent, or delivered)",
            },
            write=True,
        ),
    )
    async def redeliver(
        webhook_id: str, delivery_id: str, caller: EmployerOrAdmin, uow: Uow
    ) -> Delivery:
        delivery = await services.redeliver(
            caller,
            webhook_id,
            delivery_id,
            uow,
            poster=webhook_poster,
            lease=redelivery_lease,
        )
        return Delivery.of(delivery)

    @router.post(
        "/webhooks/{webhook_id}/secret",
        tags=["webhooks"],
        summary="Rotate the secret; the former one keeps signing for the overlap",
        responses=route_responses(
            {
                403: NOT_EMPLOYER_OR_ADMIN,
                404: WEBHOOK_NOT_FOUND,
                409: "another rotation changed the secret meanwhile",
                422: "a secret shorter than 16 characters, or one already in use",
            },
            write=True,
            json_body=True,
        ),
    )
    async def rotate_webhook_secret(
        webhook_id: str,
        body: Annotated[SecretRotation, Body(openapi_examples=ROTATION_EXAMPLES)],
        caller: EmployerOrAdmin,
        uow: Uow,
    ) -> WebhookView:
        webhook = await services.rotate_webhook_secret(
            caller, webhook_id, body.secret, uow, overlap=secret_overlap
        )
        return WebhookView.of(webhook)

    return router

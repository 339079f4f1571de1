"""Payload of `notification.delivered` (docs/events.md)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, PositiveInt

from hirestream.shared.events.envelope import EventType
from hirestream.shared.events.types import UtcDateTime


class Channel(StrEnum):
    EMAIL = "email"
    IN_APP = "in_app"
    WEBHOOK = "webhook"


class DeliveryOutcome(StrEnum):
    DELIVERED = "delivered"
    FAILED = "failed"


class NotificationDelivered(BaseModel):
    """A notification reached its channel, or finally failed to. Carries no address or
    content: the recipient is a user id or an org id."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    notification_id: str
    channel: Channel
    recipient: str
    kind: str
    subject: str
    source_event_id: str
    outcome: DeliveryOutcome
    attempts: PositiveInt
    error: str | None = None
    at: UtcDateTime


NOTIFICATION_DELIVERED = EventType(
    "notification.delivered",
    NotificationDelivered,
    subject_field="notification_id",
    publishers=("notifications",),
)

"""The notifications HTTP API. Inbox, preferences, alerts and webhooks arrive with the
notifications work (issue 5); until then the service serves health, readiness, metrics and its
documents."""

from __future__ import annotations

from fastapi import APIRouter


def notifications_router() -> APIRouter:
    return APIRouter(tags=["notifications"])

"""The applications HTTP API. The apply and status routes arrive with the applications work
(issue 4); until then the service serves health, readiness, metrics and its documents."""

from __future__ import annotations

from fastapi import APIRouter


def applications_router() -> APIRouter:
    return APIRouter(tags=["applications"])

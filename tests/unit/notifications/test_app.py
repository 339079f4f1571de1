"""The notifications app as its composition root builds it (nothing connects): which routes
need a token, and the settings of the unsubscribe links."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import ValidationError

from hirestream.notifications.api import PUBLIC_ROUTES
from hirestream.notifications.app import NotificationsSettings, create_app
from hirestream.shared.web.auth import authenticated_principal

JWT_SECRET = secrets.token_urlsafe(48)
# Served to anyone by every service (shared/web): not this service's routes.
SHARED_OPEN = {"/healthz", "/readyz", "/metrics", "/openapi.json", "/asyncapi.json"}


def settings(**changes: Any) -> NotificationsSettings:
    return NotificationsSettings.model_validate({"jwt_secret": JWT_SECRET, **changes})


@pytest.fixture(scope="module")
def app() -> Iterator[FastAPI]:
    built = create_app(settings(environment="development"))
    yield built
    asyncio.run(built.state.clients.mongo.close())


def needs_token(dependant: Dependant) -> bool:
    return any(d.call is authenticated_principal or needs_token(d) for d in dependant.dependencies)


def test_every_route_needs_a_token_but_the_public_ones(app: FastAPI) -> None:
    routes = [
        (method, route.path, route)
        for context in iter_route_contexts(app.routes)
        if isinstance(route := context.original_route, APIRoute)
        and route.include_in_schema
        and route.path not in SHARED_OPEN
        for method in route.methods or ()
    ]
    public = {(method, path) for method, path, route in routes if not needs_token(route.dependant)}
    assert public == PUBLIC_ROUTES
    assert ("POST", "/unsubscribe") in public


def test_the_openapi_document_asks_no_token_of_the_public_routes(app: FastAPI) -> None:
    paths = app.openapi()["paths"]
    for method, path in PUBLIC_ROUTES:
        operation = paths[path][method.lower()]
        assert "security" not in operation
        assert "401" not in operation["responses"]
    assert paths["/notifications/read-all"]["post"]["security"]


# ------------------------------------------------------------------------------- settings


def test_outside_development_the_unsubscribe_secret_is_required() -> None:
    with pytest.raises(ValidationError, match="UNSUBSCRIBE_SECRET must be set"):
        settings()
    assert settings(unsubscribe_secret=secrets.token_urlsafe(48)).unsubscribe_secret


@pytest.mark.parametrize("secret", ["my-dev-unsubscribe-secret-0123456789", "ab" * 20])
def test_a_placeholder_unsubscribe_secret_is_refused_outside_development(secret: str) -> None:
    with pytest.raises(ValidationError, match="placeholder"):
        settings(unsubscribe_secret=secret)
    assert settings(environment="development", unsubscribe_secret=secret).unsubscribe_secret


def test_a_short_unsubscribe_secret_is_refused() -> None:
    with pytest.raises(ValidationError, match="at least 32"):
        settings(environment="development", unsubscribe_secret="x7Gq2")


def test_in_development_without_a_secret_each_process_makes_up_its_own_key() -> None:
    development = settings(environment="development")
    one, other = development.unsubscribe_links(), development.unsubscribe_links()
    assert one.key != other.key


def test_the_links_start_with_the_public_base_url() -> None:
    configured = settings(
        environment="development",
        unsubscribe_secret=secrets.token_urlsafe(48),
        public_base_url="https://notifications.api.hirestream.dev",
        unsubscribe_mailto="optout@hirestream.dev",
    ).unsubscribe_links()
    assert configured.base_url == "https://notifications.api.hirestream.dev"
    assert configured.mailto_address == "optout@hirestream.dev"


@pytest.mark.parametrize("url", ["notifications.example", "ftp://x.example", "https://x.example?q"])
def test_a_public_base_url_that_is_not_an_http_url_is_refused(url: str) -> None:
    with pytest.raises(ValidationError, match="public_base_url"):
        settings(environment="development", public_base_url=url)

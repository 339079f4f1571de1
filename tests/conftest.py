"""Fixtures shared by every layer of tests.

Unit tests use none of the server fixtures. Integration and e2e tests ask for `servers`, which
brings up (once per session) a real Kafka broker and a real MongoDB-protocol server: see
`support/servers.py` for where they come from.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from pymongo import AsyncMongoClient

from hirestream.shared.devtoken import mint_token
from hirestream.shared.identity import Role
from hirestream.shared.settings import ServiceSettings
from tests.support.openapi_statuses import recorder
from tests.support.servers import Servers, kafka_env, real_servers

JWT_SECRET = "test-secret-" + "0123456789abcdef" * 3


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    with real_servers(tmp_path_factory.mktemp("stack")) as found:
        yield found


@pytest.fixture(scope="session")
def base_env(servers: Servers) -> dict[str, str]:
    """The environment every service gets in tests (each adds its own database name)."""
    return {
        "KAFKA_BOOTSTRAP_SERVERS": servers.kafka_bootstrap,
        "MONGODB_URL": servers.mongodb_url,
        "JWT_SECRET": JWT_SECRET,
        "ENVIRONMENT": "development",
        "SMTP_HOST": servers.smtp_host,
        "SMTP_PORT": str(servers.smtp_port),
        "LOG_LEVEL": "INFO",
        "LOG_FORMAT": "console",
        "SHUTDOWN_TIMEOUT_S": "5",
    }


@pytest.fixture(scope="session")
async def mongo(servers: Servers) -> AsyncIterator[AsyncMongoClient[dict[str, Any]]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(servers.mongodb_url, tz_aware=True)
    yield client
    await client.close()


SettingsT = TypeVar("SettingsT", bound=ServiceSettings)


def settings_for(settings_class: type[SettingsT], env: dict[str, str], **changes: Any) -> SettingsT:
    """Service settings from a test environment (not the process's own), with the Kafka
    credentials of the service's own principal (named as the service, its database's name)."""
    service = str(settings_class.model_fields["mongodb_database"].default)
    env = {**env, **kafka_env(env["KAFKA_BOOTSTRAP_SERVERS"], service)}
    return settings_class.model_validate({**{k.lower(): v for k, v in env.items()}, **changes})


def unique_db(service: str) -> str:
    return f"test_{service}_{uuid.uuid4().hex[:8]}"


def candidate_email(sub: str) -> str:
    """The verified address a test candidate's token carries unless a test names another."""
    return f"{sub}@example.com"


def bearer(
    role: Role | str,
    *,
    sub: str | None = None,
    org: str | None = None,
    email: str | None = None,
) -> dict[str, str]:
    if email is None and sub is not None and Role(role) is Role.CANDIDATE:
        email = candidate_email(sub)
    token = mint_token(JWT_SECRET, role=role, sub=sub, org=org, email=email)
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def auth() -> Callable[..., dict[str, str]]:
    return bearer


async def http_only_client_for(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for an app whose lifespan is NOT started, for checks that answer before
    any database or broker call. Such an app joins no consumer group: a throwaway app in the
    services' group would take partitions (and a backlog) from the app under test, and its
    leaving would stall the group in a rebalance."""
    transport = httpx.ASGITransport(app=app)
    # Each response is checked against the app's OpenAPI document (support/openapi_statuses.py).
    hooks = {"response": [recorder(app)]}
    async with httpx.AsyncClient(
        transport=transport, base_url="http://testserver", event_hooks=hooks
    ) as client:
        yield client


async def client_for(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to an in-process app whose lifespan (Kafka, MongoDB) is running."""
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=30) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        hooks = {"response": [recorder(app)]}  # see http_only_client_for
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", event_hooks=hooks
        ) as client:
            yield client

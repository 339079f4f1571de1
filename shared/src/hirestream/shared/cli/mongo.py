"""The CLI's MongoDB client, built from the services' settings, and its failures in one line."""

from __future__ import annotations

from typing import Any

from pymongo import AsyncMongoClient
from pymongo.errors import (
    ConfigurationError,
    InvalidURI,
    OperationFailure,
    PyMongoError,
    ServerSelectionTimeoutError,
)
from pymongo.uri_parser import parse_uri

from hirestream.shared.cli.errors import USAGE, CliError
from hirestream.shared.settings import ConnectionSettings

UNAUTHORIZED = 13
AUTHENTICATION_FAILED = 18


def mongo_client(settings: ConnectionSettings, *, timeout_s: float) -> AsyncMongoClient[Any]:
    try:
        return AsyncMongoClient(
            settings.mongodb_url.get_secret_value(),
            appname="hirestream-cli",
            tz_aware=True,
            serverSelectionTimeoutMS=int(timeout_s * 1000),
            connectTimeoutMS=int(timeout_s * 1000),
        )
    except (ConfigurationError, InvalidURI) as error:
        raise CliError(f"MONGODB_URL is not usable: {error}", exit_code=USAGE) from None


def hosts(settings: ConnectionSettings) -> str:
    """Where MONGODB_URL points, without the credentials it may carry."""
    try:
        nodes = parse_uri(settings.mongodb_url.get_secret_value())["nodelist"]
    except (ConfigurationError, InvalidURI, ValueError):
        return "MONGODB_URL"
    return ",".join(f"{host}:{port}" for host, port in nodes) or "MONGODB_URL"


def describe_mongo_error(error: PyMongoError, settings: ConnectionSettings) -> str:
    where = hosts(settings)
    if isinstance(error, ServerSelectionTimeoutError):
        return f"cannot reach MongoDB at {where} (MONGODB_URL): no server answered in time"
    if isinstance(error, OperationFailure) and error.code == AUTHENTICATION_FAILED:
        return f"MongoDB at {where} refused the credentials in MONGODB_URL"
    if isinstance(error, OperationFailure) and error.code == UNAUTHORIZED:
        return f"MongoDB at {where} refused MONGODB_URL's user: {error.details or error}"
    return f"MongoDB at {where} failed: {type(error).__name__}: {error}"

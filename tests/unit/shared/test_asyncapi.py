"""Each service's AsyncAPI document shows every message it publishes and consumes with its real
payload schema, the content type the records carry and the correlation header we write."""

from __future__ import annotations

import asyncio
import importlib
from typing import Any

import pytest

from hirestream.shared.events.catalog import BY_NAME
from hirestream.shared.events.envelope import CONTENT_TYPE
from hirestream.shared.runtime.asyncapi import CORRELATION_HEADER, asyncapi_document
from hirestream.shared.runtime.clients import ServiceClients
from hirestream.shared.settings import ServiceSettings

SERVICES = ("postings", "applications", "notifications")
JWT_SECRET = "k" * 16 + "Zq8-w3Rt!pX2vB7n"  # valid: 32 characters, not a placeholder


def clients_of(service: str) -> ServiceClients:
    """The service's clients as its composition root builds them (nothing connects)."""
    module = importlib.import_module(f"hirestream.{service}.app")
    settings_class: type[ServiceSettings] = next(
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, ServiceSettings)
        and value.__module__ == module.__name__
    )
    secrets = {"jwt_secret": JWT_SECRET, "unsubscribe_secret": JWT_SECRET}  # others ignore it
    app = module.create_app(settings_class.model_validate(secrets))
    clients: ServiceClients = app.state.clients
    return clients


def resolve(document: dict[str, Any], reference: str) -> dict[str, Any]:
    name = reference.removeprefix("#/components/schemas/").replace("%5B", "[").replace("%5D", "]")
    schema: dict[str, Any] = document["components"]["schemas"][name]
    return schema


@pytest.mark.parametrize("service", SERVICES)
def test_every_message_has_its_payload_schema_content_type_and_headers(service: str) -> None:
    clients = clients_of(service)
    try:
        document = asyncapi_document(clients.broker, name=service, version="test")
    finally:
        asyncio.run(clients.mongo.close())
    expected = {t.topic for t in (*clients.published, *clients.consumed)}
    topic_of = {event_type.payload.__name__: topic for topic, event_type in BY_NAME.items()}
    seen = set()
    for name, message in document["components"]["messages"].items():
        payload = message["payload"]
        schema = resolve(document, payload["$ref"])
        if schema.get("type") == "array":  # a batch subscriber takes a list of envelopes
            schema = resolve(document, schema["items"]["$ref"])
        assert {"id", "source", "type", "subject", "data"} <= set(schema["properties"]), name
        data = schema["properties"]["data"]
        payload_schema = resolve(document, data["$ref"])
        topic = topic_of[payload_schema["title"]]
        assert topic in name, f"{name} carries the payload of {topic}"
        assert message["contentType"] == CONTENT_TYPE
        assert CORRELATION_HEADER in message["headers"]["properties"]
        assert message["correlationId"]["location"] == f"$message.header#/{CORRELATION_HEADER}"
        seen.add(topic)
    assert seen == expected

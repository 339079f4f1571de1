"""Webhook connections reach public addresses only, checked when the connection is opened.

A webhook receiver on loopback stands in for an address inside our network; a resolver given
to the transport says what a host name resolves to, and when.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httpx
import pytest

from hirestream.notifications import webhooks
from hirestream.notifications.webhooks import check_webhook_url, webhook_transport
from tests.support.receivers import WebhookReceiver, webhook_receiver

PUBLIC = "93.184.216.34"


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    async with webhook_receiver("unused-secret") as receiver:
        yield receiver


def port_of(receiver: WebhookReceiver) -> int:
    port = urlsplit(receiver.url).port
    assert port is not None
    return port


def hosts(receiver: WebhookReceiver) -> list[str]:
    """The Host header of each request the receiver got."""
    return [request.headers["host"] for request in receiver.requests]


def resolving_to(*answers: str) -> webhooks.Resolver:
    """A resolver whose n-th lookup answers the n-th address (the last one from then on)."""
    lookups = 0

    async def resolve(host: str, port: int) -> list[str]:
        nonlocal lookups
        lookups += 1
        return [answers[min(lookups, len(answers)) - 1]]

    return resolve


async def test_a_name_that_resolves_into_our_network_is_not_connected(
    receiver: WebhookReceiver,
) -> None:
    transport = webhook_transport(allow_private=False, resolve=resolving_to("127.0.0.1"))
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(httpx.ConnectError, match="non-public address"):
            await client.post(f"http://hooks.example:{port_of(receiver)}/in", content=b"{}")
    assert receiver.requests == []


async def test_a_name_that_changes_its_answer_after_the_check_is_not_connected(
    receiver: WebhookReceiver,
) -> None:
    """DNS rebinding: public when the URL is checked, loopback when the connection opens."""
    resolve = resolving_to(PUBLIC, "127.0.0.1")
    url = f"https://hooks.example:{port_of(receiver)}/in"
    await check_webhook_url(url, allow_private=False, resolve=resolve)  # passes

    async with httpx.AsyncClient(
        transport=webhook_transport(allow_private=False, resolve=resolve)
    ) as client:
        with pytest.raises(httpx.ConnectError, match="non-public address"):
            await client.post(url.replace("https", "http"), content=b"{}")
    assert receiver.requests == []


async def test_the_connection_goes_to_the_address_checked_under_the_host_name(
    receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The name is resolved once, by the guard, and the request still names the host (so TLS
    and virtual hosts see the name): loopback counts as public for this test only."""
    monkeypatch.setattr(webhooks, "forbidden_address", lambda address: address != "127.0.0.1")
    transport = webhook_transport(allow_private=False, resolve=resolving_to("127.0.0.1"))
    async with httpx.AsyncClient(transport=transport) as client:
        response = await client.post(f"http://hooks.example:{port_of(receiver)}/in", content=b"{}")
    assert response.status_code == 401  # the receiver answered (this request is unsigned)
    assert hosts(receiver) == [f"hooks.example:{port_of(receiver)}"]


async def test_private_targets_are_reached_when_allowed(receiver: WebhookReceiver) -> None:
    async with httpx.AsyncClient(transport=webhook_transport(allow_private=True)) as client:
        response = await client.post(f"http://127.0.0.1:{port_of(receiver)}/in", content=b"{}")
    assert response.status_code == 401
    assert hosts(receiver) == [f"127.0.0.1:{port_of(receiver)}"]

"""Webhook connections reach public addresses only, checked when the connection is opened.

A receiver on loopback stands in for an address inside our network; a resolver given to the
transport says what a host name resolves to, and when.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import httpx
import pytest

from hirestream.notifications import delivery
from hirestream.notifications.delivery import check_webhook_url, webhook_transport

PUBLIC = "93.184.216.34"


class Receiver:
    """An HTTP server on loopback that records the Host header of each request it gets."""

    def __init__(self) -> None:
        hosts = self.hosts = list[str]()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                hosts.append(self.headers["Host"])
                self.rfile.read(int(self.headers["Content-Length"]))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    thread = threading.Thread(target=receiver.server.serve_forever, daemon=True)
    thread.start()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


def resolving_to(*answers: str) -> delivery.Resolver:
    """A resolver whose n-th lookup answers the n-th address (the last one from then on)."""
    lookups = 0

    async def resolve(host: str, port: int) -> list[str]:
        nonlocal lookups
        lookups += 1
        return [answers[min(lookups, len(answers)) - 1]]

    return resolve


async def test_a_name_that_resolves_into_our_network_is_not_connected(
    receiver: Receiver,
) -> None:
    transport = webhook_transport(allow_private=False, resolve=resolving_to("127.0.0.1"))
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(httpx.ConnectError, match="non-public address"):
            await client.post(f"http://hooks.example:{receiver.port}/in", content=b"{}")
    assert receiver.hosts == []


async def test_a_name_that_changes_its_answer_after_the_check_is_not_connected(
    receiver: Receiver,
) -> None:
    """DNS rebinding: public when the URL is checked, loopback when the connection opens."""
    resolve = resolving_to(PUBLIC, "127.0.0.1")
    url = f"https://hooks.example:{receiver.port}/in"
    await check_webhook_url(url, allow_private=False, resolve=resolve)  # passes

    async with httpx.AsyncClient(
        transport=webhook_transport(allow_private=False, resolve=resolve)
    ) as client:
        with pytest.raises(httpx.ConnectError, match="non-public address"):
            await client.post(url.replace("https", "http"), content=b"{}")
    assert receiver.hosts == []


async def test_the_connection_goes_to_the_address_checked_under_the_host_name(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The name is resolved once, by the guard, and the request still names the host (so TLS
    and virtual hosts see the name): loopback counts as public for this test only."""
    monkeypatch.setattr(delivery, "forbidden_address", lambda address: address != "127.0.0.1")
    transport = webhook_transport(allow_private=False, resolve=resolving_to("127.0.0.1"))
    async with httpx.AsyncClient(transport=transport) as client:
        response = await client.post(f"http://hooks.example:{receiver.port}/in", content=b"{}")
    assert response.status_code == 204
    assert receiver.hosts == [f"hooks.example:{receiver.port}"]


async def test_private_targets_are_reached_when_allowed(receiver: Receiver) -> None:
    async with httpx.AsyncClient(transport=webhook_transport(allow_private=True)) as client:
        response = await client.post(f"http://127.0.0.1:{receiver.port}/in", content=b"{}")
    assert response.status_code == 204
    assert receiver.hosts == [f"127.0.0.1:{receiver.port}"]

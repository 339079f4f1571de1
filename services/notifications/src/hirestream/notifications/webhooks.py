"""Webhooks: the URL check, the guarded connection, and the signed POST.

A webhook may only reach public addresses over https (unless `WEBHOOK_ALLOW_PRIVATE`, for
local runs and tests): the URL is checked at registration and before every attempt, and the
connection itself is checked again, since DNS answers change (`PublicAddressesOnly`).
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpcore
import httpx

from hirestream.notifications.domain import (
    SIGNATURE_HEADER,
    DeliveryFailed,
    WebhookRefused,
    forbidden_address,
    sign_all,
)
from hirestream.shared.events.envelope import CONTENT_TYPE

SOCKET_OPTION = httpcore.SOCKET_OPTION


class UnsafeWebhookUrl(ValueError):
    """A webhook URL that could reach inside our network, or is not https."""


Resolver = Callable[[str, int], Awaitable[list[str]]]
"""Resolves a host name (and port) to the addresses a connection may use."""


async def resolve_host(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


async def check_webhook_url(
    url: str, *, allow_private: bool, resolve: Resolver = resolve_host
) -> None:
    """Refuse plain http and any host that resolves to a loopback, private, link-local or
    otherwise non-public address (server-side request forgery), unless private targets are
    allowed (local runs and tests). Checked at registration and before every attempt; the
    connection itself is checked again (`PublicAddressesOnly`), since DNS answers change."""
    parts = urlsplit(url)
    if parts.scheme not in {"https", "http"} or not parts.hostname:
        raise UnsafeWebhookUrl("the url must be an absolute https url")
    if allow_private:
        return
    if parts.scheme != "https":
        raise UnsafeWebhookUrl("the url must use https")
    try:
        addresses = await resolve(parts.hostname, parts.port or 443)
    except OSError as error:
        raise UnsafeWebhookUrl(f"the host {parts.hostname} does not resolve") from error
    if any(forbidden_address(address) for address in addresses):
        raise UnsafeWebhookUrl(f"the host {parts.hostname} resolves to a non-public address")


class PublicAddressesOnly(httpcore.AsyncNetworkBackend):
    """Opens webhook connections to public addresses only: it resolves the host itself, refuses
    if any address is not public, and connects to an address it checked. A check of the URL
    before sending is not enough on its own: a name can answer with a public address to the
    check and a private one to the connection a moment later (DNS rebinding). TLS still
    verifies the certificate against the host name, and pooled connections stay per host name.
    Written here: httpcore's network backend is the documented place for it, and the few
    packages that do this for httpx are young and little used."""

    def __init__(self, resolve: Resolver = resolve_host) -> None:
        self._resolve = resolve
        self._network = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await self._resolve(host, port)
        except OSError as error:
            raise httpcore.ConnectError(f"{host} does not resolve") from error
        if not addresses or any(forbidden_address(address) for address in addresses):
            raise httpcore.ConnectError(f"{host} resolves to a non-public address")
        return await self._network.connect_tcp(
            addresses[0], port, timeout, local_address, socket_options
        )

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("webhooks do not use unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._network.sleep(seconds)


WEBHOOK_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=5)


def webhook_transport(
    *, allow_private: bool, resolve: Resolver = resolve_host
) -> httpx.AsyncHTTPTransport:
    """httpx's transport, connecting through `PublicAddressesOnly` unless private targets are
    allowed. httpx takes no network backend, its connection pool (httpcore) does, so the pool
    (httpx's private `_pool`) is built again with the transport's settings; should a new httpx
    stop using it, tests/unit/notifications/test_webhook_egress.py fails."""
    # Not from the environment: a proxy would make the connections this guard checks
    # go to the proxy (where egress must then be guarded instead).
    transport = httpx.AsyncHTTPTransport(trust_env=False, limits=WEBHOOK_LIMITS)
    if not allow_private:
        transport._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=WEBHOOK_LIMITS.max_connections,
            max_keepalive_connections=WEBHOOK_LIMITS.max_keepalive_connections,
            keepalive_expiry=WEBHOOK_LIMITS.keepalive_expiry,
            network_backend=PublicAddressesOnly(resolve),
        )
    return transport


@dataclass
class WebhookSender:
    client: httpx.AsyncClient
    allow_private: bool

    async def send(self, url: str, secrets: Sequence[str], payload: bytes) -> int:
        """POST the payload signed with each of `secrets` (the current one first); the
        receiver's 2xx status, or DeliveryFailed (WebhookRefused with its status)."""
        try:  # refused here with a clear reason; the connection is checked again
            await check_webhook_url(url, allow_private=self.allow_private)
        except UnsafeWebhookUrl as error:
            raise DeliveryFailed(f"webhook url refused: {error}") from error
        headers = {
            "Content-Type": CONTENT_TYPE,
            SIGNATURE_HEADER: sign_all(secrets, int(time.time()), payload),
        }
        try:
            response = await self.client.post(url, content=payload, headers=headers)
        except httpx.HTTPError as error:
            raise DeliveryFailed(f"webhook: {type(error).__name__}") from error
        if not response.is_success:
            raise WebhookRefused(response.status_code)
        return response.status_code

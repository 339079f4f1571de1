"""What each service's `__main__` does: settings (or one line and exit 2), logging, serve."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import socket
import struct
import sys
import termios
from collections.abc import Callable, Iterable
from typing import TypeVar

import uvicorn
from fastapi import FastAPI

from hirestream.shared.logging import configure_logging
from hirestream.shared.settings import ServiceSettings, load_settings

SettingsT = TypeVar("SettingsT", bound=ServiceSettings)

# uvicorn's exit status when the server did not start (uvicorn.main.STARTUP_FAILURE).
STARTUP_FAILURE = 3
# At most this long, once shutdown begins, for requests already delivered to a kept-alive
# connection to be read; one turn of the event loop is all it usually takes.
READ_DELIVERED_LIMIT_S = 1.0


def run_service(
    name: str, settings_class: type[SettingsT], create_app: Callable[[SettingsT], FastAPI]
) -> None:
    settings = load_settings(settings_class)
    configure_logging(name, settings.log_level, settings.log_format)
    serve(create_app(settings), settings)


def serve(app: FastAPI, settings: ServiceSettings) -> None:
    """HTTP and, through the app's lifespan, the Kafka side in one process. On SIGTERM the
    server stops accepting connections, reads the requests already delivered to the open ones,
    waits for requests in flight (at most SHUTDOWN_TIMEOUT_S), then runs the lifespan's
    shutdown."""
    config = uvicorn.Config(
        app,
        host="0.0.0.0",  # noqa: S104 - in a container the pod's address is the one to serve on
        port=settings.port,
        log_config=None,  # keep our structlog set-up
        access_log=False,  # the metrics middleware counts requests; no per-request log lines
        timeout_graceful_shutdown=int(settings.shutdown_timeout_s),
        proxy_headers=True,
    )
    server = DrainingServer(config)
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises the SIGINT it handled
        server.run()
    if not server.started:
        sys.exit(STARTUP_FAILURE)


class DrainingServer(uvicorn.Server):
    """uvicorn's server, but a request that reached an idle kept-alive connection before
    shutdown began is answered: uvicorn closes idle connections at once, and one whose request
    the busy event loop has not read yet looks idle, so the request was reset with it."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()  # refuse new connections; uvicorn's own close is then a no-op
        await read_delivered_requests(
            [connection.transport for connection in self.server_state.connections]
        )
        # Now a connection with a request in hand is busy: uvicorn lets it answer, then closes.
        await super().shutdown(sockets)


async def read_delivered_requests(
    transports: Iterable[asyncio.BaseTransport], limit_s: float = READ_DELIVERED_LIMIT_S
) -> None:
    """Let the event loop read what has arrived on `transports` (those not paused for flow
    control), up to `limit_s`."""
    pending = list(transports)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    await asyncio.sleep(0)  # one turn of the loop: its selector hands over what has arrived
    while loop.time() < deadline:
        pending = [transport for transport in pending if has_unread_input(transport)]
        if not pending:
            return
        await asyncio.sleep(0.01)  # the kernel's receive queues signal nothing to await


def has_unread_input(transport: asyncio.BaseTransport) -> bool:
    """Whether the kernel holds bytes for this connection that the server has not read."""
    if transport.is_closing() or not isinstance(transport, asyncio.ReadTransport):
        return False
    if not transport.is_reading():
        return False  # paused on purpose (flow control, pipelining): read when its turn comes
    sock = transport.get_extra_info("socket")
    if sock is None:
        return False
    try:
        count = fcntl.ioctl(sock.fileno(), termios.FIONREAD, struct.pack("i", 0))
    except OSError:
        return False
    unread: int = struct.unpack("i", count)[0]
    return unread > 0

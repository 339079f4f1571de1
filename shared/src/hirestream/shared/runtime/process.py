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
from typing import Protocol, TypeVar

import uvicorn
from fastapi import FastAPI

from hirestream.shared.logging import configure_logging
from hirestream.shared.settings import ServiceSettings, exit_with, load_settings
from hirestream.shared.tracing import TracingSettingsError, configure_tracing

SettingsT = TypeVar("SettingsT", bound=ServiceSettings)

# uvicorn's exit status when the server did not start (uvicorn.main.STARTUP_FAILURE).
STARTUP_FAILURE = 3
# At most this long, once shutdown begins, for requests already delivered to a kept-alive
# connection to be read; a turn or two of the event loop is all it usually takes.
READ_DELIVERED_LIMIT_S = 1.0


def run_service(
    name: str, settings_class: type[SettingsT], create_app: Callable[[SettingsT], FastAPI]
) -> None:
    settings = load_settings(settings_class)
    configure_logging(name, settings.log_level, settings.log_format)
    try:
        tracer_provider = configure_tracing(name)
    except TracingSettingsError as error:
        exit_with(str(error))
    serve(create_app(settings), settings)
    if tracer_provider is not None:
        tracer_provider.shutdown()  # the spans still batched leave before the process does


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
    """uvicorn's server, but a request that reached a kept-alive connection before shutdown is
    answered: uvicorn closes idle connections at once, and one whose request its busy event loop
    has not read yet looks idle, so the request was reset with it."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()  # refuse new connections; uvicorn's own close is then a no-op
        await shut_down_once_read(list(self.server_state.connections))
        # uvicorn asks every connection again (a closed one stays closed, a busy one closes after
        # its response anyway), then waits for those still answering.
        await super().shutdown(sockets)


class Connection(Protocol):
    """What every uvicorn protocol has: its transport, and `shutdown` (close when idle, or
    once the response in hand is sent)."""

    @property
    def transport(self) -> asyncio.BaseTransport: ...

    def shutdown(self) -> None: ...


async def shut_down_once_read(
    connections: Iterable[Connection], limit_s: float = READ_DELIVERED_LIMIT_S
) -> None:
    """Ask each connection to shut down (an idle one closes, a busy one closes after its
    response) once the kernel holds nothing for it that the server has not read; after
    `limit_s`, the ones left are uvicorn's to shut down."""
    waiting = set(connections)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while True:
        # Checked and closed in one step, so a request arriving unseen in between is a matter of
        # microseconds, not of a turn of the loop.
        for connection in [c for c in waiting if not has_unread_input(c.transport)]:
            connection.shutdown()
            waiting.discard(connection)
        if not waiting or loop.time() >= deadline:
            return
        await asyncio.sleep(0.005)  # the loop reads what has arrived; the kernel signals nothing


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

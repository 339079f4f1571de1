"""The mailer keeps SMTP connections open between messages and replaces one the server closed
(against an in-process aiosmtpd server on a loopback port)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from hirestream.notifications.delivery import SmtpMailer


class Recorder:
    def __init__(self) -> None:
        self.sessions = 0
        self.messages: list[bytes | str] = []

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: Any
    ) -> Any:
        self.sessions += 1
        session.host_name = hostname
        return responses

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.messages.append(envelope.content or b"")
        return "250 OK"


@pytest.fixture
async def smtp_server() -> AsyncIterator[tuple[Recorder, asyncio.Server]]:
    recorder = Recorder()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(recorder), "127.0.0.1", 0)
    yield recorder, server
    server.close()


def mailer_for(server: asyncio.Server) -> SmtpMailer:
    port = server.sockets[0].getsockname()[1]
    return SmtpMailer(host="127.0.0.1", port=port, sender="n@example.com", pool_size=2)


async def test_messages_share_a_kept_connection(
    smtp_server: tuple[Recorder, asyncio.Server],
) -> None:
    recorder, server = smtp_server
    mailer = mailer_for(server)
    for n in range(3):
        await mailer.send("c@example.com", f"title {n}", "body")
    assert len(recorder.messages) == 3
    assert recorder.sessions == 1
    await mailer.close()


async def test_a_kept_connection_the_server_closed_is_replaced_and_the_message_sent(
    smtp_server: tuple[Recorder, asyncio.Server],
) -> None:
    recorder, server = smtp_server
    mailer = mailer_for(server)
    await mailer.send("c@example.com", "first", "body")
    for kept in mailer._idle:  # as a server that closes idle sessions would
        kept.transport.close()  # type: ignore[union-attr]
    await asyncio.sleep(0.05)
    await mailer.send("c@example.com", "second", "body")
    assert len(recorder.messages) == 2
    assert recorder.sessions == 2
    await mailer.close()


async def test_concurrent_sends_keep_no_more_connections_than_the_pool(
    smtp_server: tuple[Recorder, asyncio.Server],
) -> None:
    recorder, server = smtp_server
    mailer = mailer_for(server)
    await asyncio.gather(*(mailer.send("c@example.com", f"t{n}", "b") for n in range(5)))
    assert len(recorder.messages) == 5
    assert len(mailer._idle) == 2
    await mailer.close()
    assert mailer._idle == []

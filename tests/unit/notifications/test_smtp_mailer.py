"""The mailer keeps SMTP connections open between messages and replaces one the server closed,
and writes a message no header line can be smuggled into (against an in-process aiosmtpd
server on a loopback port)."""

from __future__ import annotations

import asyncio
import email
import email.policy
from collections.abc import AsyncIterator
from email.message import EmailMessage

import pytest
from aiosmtpd.smtp import SMTP

from hirestream.notifications.domain import DeliveryFailed
from hirestream.notifications.email import SmtpMailer
from tests.support.notifications_fakes import (
    SmtpRecorder,
)


@pytest.fixture
async def smtp_server() -> AsyncIterator[tuple[SmtpRecorder, asyncio.Server]]:
    recorder = SmtpRecorder()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(recorder), "127.0.0.1", 0)
    yield recorder, server
    server.close()


def mailer_for(server: asyncio.Server) -> SmtpMailer:
    port = server.sockets[0].getsockname()[1]
    return SmtpMailer(host="127.0.0.1", port=port, sender="n@example.com", pool_size=2)


async def test_messages_share_a_kept_connection(
    smtp_server: tuple[SmtpRecorder, asyncio.Server],
) -> None:
    recorder, server = smtp_server
    mailer = mailer_for(server)
    for n in range(3):
        await mailer.send("c@example.com", f"title {n}", "body")
    assert len(recorder.messages) == 3
    assert recorder.sessions == 1
    await mailer.close()


async def test_a_kept_connection_the_server_closed_is_replaced_and_the_message_sent(
    smtp_server: tuple[SmtpRecorder, asyncio.Server],
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
    smtp_server: tuple[SmtpRecorder, asyncio.Server],
) -> None:
    recorder, server = smtp_server
    mailer = mailer_for(server)
    await asyncio.gather(*(mailer.send("c@example.com", f"t{n}", "b") for n in range(5)))
    assert len(recorder.messages) == 5
    assert len(mailer._idle) == 2
    await mailer.close()
    assert mailer._idle == []


async def test_a_message_has_both_alternatives_and_its_headers(
    smtp_server: tuple[SmtpRecorder, asyncio.Server],
) -> None:
    recorder, server = smtp_server
    mailer = mailer_for(server)
    await mailer.send("c@example.com", "Zürich: application sent", "We got it, Zoë.")
    await mailer.close()
    message = parsed(recorder.messages[0])
    assert message.defects == []
    assert (message["From"], message["To"]) == ("n@example.com", "c@example.com")
    assert message["Subject"] == "Zürich: application sent"
    plain, html = message.get_body(("plain",)), message.get_body(("html",))
    assert plain is not None
    assert html is not None
    assert "We got it, Zoë." in plain.get_content()
    assert "We got it, Zoë." in html.get_content()


async def test_a_line_break_in_a_title_adds_no_header_and_in_an_address_sends_nothing(
    smtp_server: tuple[SmtpRecorder, asyncio.Server],
) -> None:
    recorder, server = smtp_server
    mailer = mailer_for(server)
    await mailer.send("c@example.com", "Role\r\nBcc: victim@example.com", "body")
    with pytest.raises(DeliveryFailed):
        await mailer.send("c@example.com\r\nBcc: victim@example.com", "Role", "body")
    await mailer.close()
    assert len(recorder.messages) == 1
    message = parsed(recorder.messages[0])
    assert message["Bcc"] is None
    assert message["Subject"] == "Role Bcc: victim@example.com"  # one header, unfolded


def _bytes(content: bytes | str) -> bytes:
    return content if isinstance(content, bytes) else content.encode()


def parsed(content: bytes | str) -> EmailMessage:
    """A received message as a mail reader sees it."""
    message = email.message_from_bytes(_bytes(content), policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


async def test_a_long_title_beyond_ascii_is_folded_into_short_lines_and_reads_back_whole(
    smtp_server: tuple[SmtpRecorder, asyncio.Server],
) -> None:
    recorder, server = smtp_server
    port = server.sockets[0].getsockname()[1]
    mailer = SmtpMailer(host="127.0.0.1", port=port, sender="Hirestream Zürich <n@example.com>")
    title = "Entwickler:in für Zürich, 日本語の求人 " * 4
    await mailer.send("c@example.com", title, "body")
    await mailer.close()
    raw = _bytes(recorder.messages[0])
    assert max(len(line) for line in raw.splitlines()) <= 78
    message = parsed(raw)
    assert message.defects == []
    assert message["Subject"] == title.strip()
    assert message["From"] == "Hirestream Zürich <n@example.com>"


def test_a_sender_with_a_line_break_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="not one address"):
        SmtpMailer(host="127.0.0.1", port=25, sender="n@example.com\r\nBcc: v@example.com")

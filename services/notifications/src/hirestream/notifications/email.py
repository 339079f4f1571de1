"""Email: the message (the standard library's `EmailMessage`) and its sending (aiosmtplib).

Up to `pool_size` SMTP connections are kept open between messages: a session costs a
connection, a greeting and the login (and a TLS handshake with STARTTLS) that a message on an
open one does not. A kept connection the server closed meanwhile is noticed at the next send,
which then opens a new one.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import parseaddr

import aiosmtplib
from jinja2 import Environment, PackageLoader, select_autoescape

from hirestream.notifications.domain import DeliveryFailed

_templates = Environment(
    loader=PackageLoader("hirestream.notifications", "templates"),
    autoescape=select_autoescape(["html"]),
)


def notification_email(sender: str, to: str, title: str, body: str) -> EmailMessage:
    """Plain text and HTML alternatives. The policy refuses a header that would carry a line
    break, so a title (user input) cannot smuggle in another header."""
    message = EmailMessage(policy=SMTP)
    message["From"] = sender
    message["To"] = to
    message["Subject"] = " ".join(title.split())  # one line, as displayed
    message.set_content(_templates.get_template("notification.txt").render(title=title, body=body))
    message.add_alternative(
        _templates.get_template("notification.html").render(title=title, body=body),
        subtype="html",
    )
    return message


@dataclass
class SmtpMailer:
    host: str
    port: int
    sender: str
    username: str | None = None
    password: str | None = None
    start_tls: bool = False
    timeout_s: float = 10.0
    pool_size: int = 16
    _idle: list[aiosmtplib.SMTP] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        name, address = parseaddr(self.sender)
        if not address or "\r" in self.sender or "\n" in self.sender:
            raise ValueError("the sender is not one address")
        self._from = str(Address(display_name=name, addr_spec=address))

    async def send(self, to: str, title: str, body: str) -> None:
        try:
            message = notification_email(self._from, to, title, body)
        except (ValueError, IndexError) as error:  # an address the header registry refuses
            raise DeliveryFailed(f"smtp: the message cannot be made: {error}") from error
        kept = self._idle.pop() if self._idle else None
        if kept is not None:
            try:
                await kept.send_message(message)
            except (aiosmtplib.SMTPException, OSError):
                kept.close()  # closed by the server while idle, most likely: open a new one
            else:
                self._keep(kept)
                return
        client = aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            username=self.username,
            password=self.password,
            start_tls=self.start_tls,
            timeout=self.timeout_s,
        )
        try:
            await client.connect()  # logs in too when there are credentials
            await client.send_message(message)
        except (aiosmtplib.SMTPException, OSError) as error:
            client.close()
            raise DeliveryFailed(f"smtp: {type(error).__name__}") from error
        self._keep(client)

    def _keep(self, client: aiosmtplib.SMTP) -> None:
        if len(self._idle) < self.pool_size:
            self._idle.append(client)
        else:
            client.close()

    async def close(self) -> None:
        """Say goodbye on the kept connections (at shutdown)."""
        while self._idle:
            client = self._idle.pop()
            with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                await client.quit()
            client.close()

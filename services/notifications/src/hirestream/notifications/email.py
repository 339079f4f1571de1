"""Email: the message (the standard library's `EmailMessage`) and its sending (aiosmtplib).

Up to `pool_size` SMTP connections are kept open between messages: a session costs a
connection, a greeting and the login (and a TLS handshake with STARTTLS) that a message on an
open one does not. A kept connection the server closed meanwhile is noticed at the next send,
which then opens a new one.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from email.headerregistry import Address, BaseHeader, HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from email.policy import SMTP, Policy
from email.utils import parseaddr

import aiosmtplib
from jinja2 import Environment, PackageLoader, select_autoescape

from hirestream.notifications.domain import DeliveryFailed, ListUnsubscribe

_templates = Environment(
    loader=PackageLoader("hirestream.notifications", "templates"),
    autoescape=select_autoescape(["html"]),
)


class _UrlListHeader(UnstructuredHeader, BaseHeader):
    """List-Unsubscribe, folded between its `<URL>`s only. The policy would fold a URL longer
    than a line into RFC 2047 encoded words, which no mail app reads as a URL; a line of one
    URL stays within RFC 5322's limit of 998 characters."""

    def fold(self, *, policy: Policy) -> str:
        urls = re.findall(r"<[^<>]*>", str(self))
        return f"{self.name}: " + f",{policy.linesep} ".join(urls) + policy.linesep


_headers = HeaderRegistry()
_headers.map_to_type("list-unsubscribe", _UrlListHeader)
_POLICY = SMTP.clone(header_factory=_headers)


def notification_email(
    sender: str, to: str, title: str, body: str, unsubscribe: ListUnsubscribe | None = None
) -> EmailMessage:
    """Plain text and HTML alternatives, and the unsubscribe headers: List-Unsubscribe with
    the one-click URL and a mailto (RFC 2369), List-Unsubscribe-Post (RFC 8058) so that mail
    apps may POST the URL. The policy refuses a header that would carry a line break, so a
    title (user input) cannot smuggle in another header."""
    message = EmailMessage(policy=_POLICY)
    message["From"] = sender
    message["To"] = to
    message["Subject"] = " ".join(title.split())  # one line, as displayed
    if unsubscribe is not None:
        message["List-Unsubscribe"] = f"<{unsubscribe.url}>, <{unsubscribe.mailto}>"
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
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

    async def send(
        self, to: str, title: str, body: str, unsubscribe: ListUnsubscribe | None = None
    ) -> None:
        try:
            message = notification_email(self._from, to, title, body, unsubscribe)
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

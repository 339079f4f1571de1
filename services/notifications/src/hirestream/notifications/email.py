"""Email: the message (the standard library's `EmailMessage`) and its sending (aiosmtplib).

Up to `pool_size` SMTP connections are kept open between messages: a session costs a
connection, a greeting and the login (and a TLS handshake with STARTTLS) that a message on an
open one does not. A kept connection the server closed meanwhile is noticed at the next send,
which then opens a new one.
"""

from __future__ import annotations

import contextlib
import functools
import re
from dataclasses import dataclass, field
from email import base64mime
from email.headerregistry import Address, BaseHeader, HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage, MIMEPart
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


class _HeaderClasses(HeaderRegistry):
    """The standard registry, making each header's class once: the stdlib's builds a new
    class for every header of every message, which was a third of an email's cost."""

    def __init__(self) -> None:
        super().__init__()
        self._made: dict[str, type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        if key not in self._made:
            self._made[key] = super().__getitem__(key)
        return self._made[key]


_headers = _HeaderClasses()
_headers.map_to_type("list-unsubscribe", _UrlListHeader)
_POLICY = SMTP.clone(header_factory=_headers)
# Base64 bodies never contain "-", so a fixed boundary cannot occur in them: the generator
# then need not search each body for a unique one.
_BOUNDARY = "hirestream-alternative"


@functools.cache
def _fixed(name: str, value: str) -> BaseHeader:
    """A header whose value is the same in every email, parsed once: header objects are
    immutable, and parsing is most of what building a message costs."""
    return _POLICY.header_factory(name, value)  # type: ignore[no-any-return]


def _text_part(text: str, subtype: str) -> MIMEPart:
    """What `set_content(text, subtype=subtype, cte="base64")` makes, with its fixed headers
    parsed once instead of three times per part."""
    part = MIMEPart(policy=_POLICY)
    part.set_raw("Content-Type", _fixed("Content-Type", f'text/{subtype}; charset="utf-8"'))
    part.set_raw("Content-Transfer-Encoding", _fixed("Content-Transfer-Encoding", "base64"))
    part.set_payload(base64mime.body_encode(text.encode()))
    return part


def notification_email(
    sender: str, to: str, title: str, body: str, unsubscribe: ListUnsubscribe | None = None
) -> EmailMessage:
    """Plain text and HTML alternatives, and the unsubscribe headers: List-Unsubscribe with
    the one-click URL and a mailto (RFC 2369), List-Unsubscribe-Post (RFC 8058) so that mail
    apps may POST the URL. The policy refuses a header that would carry a line break, so a
    title (user input) cannot smuggle in another header."""
    message = EmailMessage(policy=_POLICY)
    message.set_raw("From", _fixed("From", sender))
    message["To"] = to
    message["Subject"] = " ".join(title.split())  # one line, as displayed
    if unsubscribe is not None:
        message["List-Unsubscribe"] = f"<{unsubscribe.url}>, <{unsubscribe.mailto}>"
        message.set_raw(
            "List-Unsubscribe-Post", _fixed("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")
        )
    message.set_raw("MIME-Version", _fixed("MIME-Version", "1.0"))
    message.set_raw(
        "Content-Type",
        _fixed("Content-Type", f'multipart/alternative; boundary="{_BOUNDARY}"'),
    )
    message.set_payload(
        [
            _text_part(_templates.get_template(name).render(title=title, body=body), subtype)
            for name, subtype in (("notification.txt", "plain"), ("notification.html", "html"))
        ]
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

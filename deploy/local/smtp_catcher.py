"""Development mail catcher for the Docker-free local stack (deploy/local/stack.sh).

Listens for SMTP on HOST:PORT and stores every message it receives as one
`.eml` file in MAIL_DIR. Nothing is ever relayed anywhere.

File names are `<sequence>-<UTC time>.eml` with a zero-padded sequence number,
so sorting the names gives arrival order; the sequence continues from the files
already present after a restart. Each file is written under a temporary name
and renamed, so a reader never sees half a message.

Each file is the message exactly as the client sent it, preceded by two header
lines that record the SMTP envelope (as aiosmtpd's own Message handler does):
`X-MailFrom:` and `X-RcptTo:` — the envelope is the only place Bcc recipients
appear.

The log gets one line per message with its sequence number and size only:
no addresses, subjects or bodies.

Any AUTH credentials are accepted (over plain text, it is loopback only), so a
service configured with SMTP credentials works unchanged against the catcher.

Usage: python smtp_catcher.py --port 1025 --mail-dir DIR [--host 127.0.0.1]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path

try:
    from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session
except ImportError:  # stack.sh checks this first; keep the message to one line anyway
    sys.exit("error: aiosmtpd is not installed for this python — pip install aiosmtpd")

log = logging.getLogger("smtp_catcher")

_NAME_RE = re.compile(r"^(\d+)-.*\.eml$")


class MailDirHandler:
    """aiosmtpd handler: one .eml file per message, numbered in arrival order."""

    def __init__(self, mail_dir: Path) -> None:
        self.mail_dir = mail_dir
        self.sequence = self._last_sequence()

    def _last_sequence(self) -> int:
        numbers = [
            int(m.group(1)) for p in self.mail_dir.iterdir() if (m := _NAME_RE.match(p.name))
        ]
        return max(numbers, default=0)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        # Handlers run one at a time on the event loop, so the counter needs no lock.
        self.sequence += 1
        seq = self.sequence
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        name = f"{seq:08d}-{stamp}.eml"

        envelope_headers = (
            f"X-MailFrom: {envelope.mail_from}\r\nX-RcptTo: {', '.join(envelope.rcpt_tos)}\r\n"
        ).encode()
        data = envelope_headers + (envelope.original_content or b"")

        tmp = self.mail_dir / f".{name}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, self.mail_dir / name)

        log.info("stored message %d (%d bytes)", seq, len(data))
        return "250 Message accepted for delivery"


def _accept_any_auth(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: object
) -> AuthResult:
    return AuthResult(success=True)


async def serve(host: str, port: int, mail_dir: Path) -> None:
    handler = MailDirHandler(mail_dir)
    loop = asyncio.get_running_loop()

    def factory() -> SMTP:
        return SMTP(
            handler,
            hostname="smtp-catcher.local",
            enable_SMTPUTF8=True,
            authenticator=_accept_any_auth,
            auth_require_tls=False,
        )

    server = await loop.create_server(factory, host=host, port=port)

    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)

    log.info(
        "listening on %s:%d, storing messages in %s (last sequence %d)",
        host,
        port,
        mail_dir,
        handler.sequence,
    )
    await stopping.wait()

    log.info("stopping")
    server.close()
    await server.wait_closed()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1025)
    parser.add_argument("--mail-dir", type=Path, required=True)
    args = parser.parse_args()

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # aiosmtpd logs peers, senders and recipients at INFO, and warns about its own
    # deprecated login_data on every AUTH: keep addresses and noise out of the log.
    logging.getLogger("mail.log").setLevel(logging.ERROR)

    args.mail_dir.mkdir(parents=True, exist_ok=True)
    asyncio.run(serve(args.host, args.port, args.mail_dir))


if __name__ == "__main__":
    main()

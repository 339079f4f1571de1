"""A real webhook receiver for tests: an HTTP/1.1 server on 127.0.0.1 that records every
request, verifies `X-Hirestream-Signature` as docs/api.md defines it, and can be told to
answer 500 to its first N requests (or to all of them).

Deliberately independent of the service's code: the signature is checked here with the
standard library only, the way an integrator's receiver would check it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

SIGNATURE_HEADER = "x-hirestream-signature"
# `t=<unix>` then one `v1=<hex>` per secret the sender signs with (two while it rotates).
_SIGNATURE = re.compile(r"t=(\d+)((?:,v1=[0-9a-f]{64})+)")
# A receiver refuses signatures older or newer than this, so a captured request cannot be
# replayed later (the usual rule for signed webhooks).
TOLERANCE_S = 300
MAX_BODY = 1_000_000
_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    411: "Length Required",
    500: "Internal Server Error",
}


def signature_verifies(header: str | None, body: bytes, secret: str) -> bool:
    """`t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>" with a secret>[,v1=…]`, recent enough,
    one of whose `v1` is made with the secret this receiver holds."""
    match = _SIGNATURE.fullmatch(header or "")
    if match is None:
        return False
    timestamp, signatures = match.groups()
    if abs(time.time() - int(timestamp)) > TOLERANCE_S:
        return False
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    received = [part.removeprefix("v1=") for part in signatures.split(",") if part]
    # Every one compared, so the time taken does not say which matched.
    matches = [hmac.compare_digest(expected.hexdigest(), one) for one in received]
    return any(matches)


def signatures_in(header: str | None) -> int:
    """How many `v1` signatures a header carries (one per secret the sender signs with)."""
    return (header or "").count(",v1=")


@dataclass(frozen=True)
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes
    signature_ok: bool
    answered: int


@dataclass
class WebhookReceiver:
    """Answers 500 to the first `fail_first` requests (every one with `always_fail`), then
    200 to those whose signature verifies (401 to the others)."""

    secret: str
    fail_first: int = 0
    always_fail: bool = False
    path: str = "/hooks/hirestream"
    requests: list[ReceivedRequest] = field(default_factory=list)
    _server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "the receiver is not running"
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}{self.path}"

    @property
    def accepted(self) -> list[ReceivedRequest]:
        return [request for request in self.requests if request.answered == 200]

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, host="127.0.0.1", port=0)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def _status_for(self, signature_ok: bool) -> int:
        if self.always_fail or len(self.requests) < self.fail_first:
            return 500
        return 200 if signature_ok else 401

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            status = await self._one_request(reader)
            reason = _REASONS[status]
            writer.write(
                f"HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass  # the client went away: nothing to answer
        finally:
            writer.close()
            await writer.wait_closed()

    async def _one_request(self, reader: asyncio.StreamReader) -> int:
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        parts = request_line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            return 400
        method, path, _ = parts
        headers: dict[str, str] = {}
        for line in header_lines:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        if "content-length" not in headers:
            return 411  # chunked bodies are not something a webhook sender needs
        length = int(headers["content-length"])
        if not 0 <= length <= MAX_BODY:
            return 400
        body = await reader.readexactly(length)
        signature_ok = signature_verifies(headers.get(SIGNATURE_HEADER), body, self.secret)
        status = self._status_for(signature_ok)
        self.requests.append(ReceivedRequest(method, path, headers, body, signature_ok, status))
        return status


@asynccontextmanager
async def webhook_receiver(
    secret: str, *, fail_first: int = 0, always_fail: bool = False
) -> AsyncIterator[WebhookReceiver]:
    receiver = WebhookReceiver(secret, fail_first=fail_first, always_fail=always_fail)
    await receiver.start()
    try:
        yield receiver
    finally:
        await receiver.stop()

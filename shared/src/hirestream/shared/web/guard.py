"""Abuse limits in front of every route: body size, JSON shape, and writes per client.

- A body larger than `MAX_BODY_BYTES` gets 413 (checked on Content-Length and while reading).
- JSON nested deeper than `MAX_JSON_DEPTH` gets 422 before it is parsed: a deep document would
  otherwise exhaust the parser's recursion.
- A JSON object key starting with `$` (a MongoDB operator such as `$ne` or `$where`), or a
  query parameter name with `$`, `[` or `]` (the `a[$ne]=` smuggling form), gets 422. Dotted
  keys are refused by the request models themselves (unknown fields are forbidden), and no
  store uses a caller's key as a field path.
- Writes (POST, PUT, PATCH, DELETE) are limited per client by a `WriteBudget`: 429 with
  `Retry-After`. The client is the verified principal when the request carries a valid token,
  else the peer address: a token that does not verify spends its sender's budget, never the
  one of the user it names. The budgets live in the process's memory, so the limit holds per
  replica: with N replicas a client may make up to N times the limit; a shared store (Redis)
  is the upgrade when that matters.

Hand-written as one small ASGI middleware because it must see the raw body before FastAPI
parses it.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from limits import parse as parse_limit
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hirestream.shared.web.auth import InvalidToken, JwtVerifier
from hirestream.shared.web.problems import Problem, problem_response

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_FORBIDDEN_QUERY_CHARACTERS = frozenset("$[]")


class RequestGuard:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        max_json_depth: int,
        write_limit: str,
        verifier: JwtVerifier,
    ) -> None:
        self.app = app
        self.verifier = verifier
        self.max_body_bytes = max_body_bytes
        self.max_json_depth = max_json_depth
        self.write_limit = parse_limit(write_limit)
        self.budget = WriteBudget(self.write_limit.amount, float(self.write_limit.get_expiry()))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            self._check_query(scope)
            if scope["method"] in WRITE_METHODS:
                self._check_rate(await self._client_of(scope))
            body = await self._read_body(scope, receive)
            if body:
                self._check_json(body)
        except Problem as problem:
            await problem_response(problem)(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)

    def _check_query(self, scope: Scope) -> None:
        query = scope.get("query_string", b"").decode("latin-1")
        for name, _ in parse_qsl(query, keep_blank_values=True):
            if _FORBIDDEN_QUERY_CHARACTERS & set(name):
                raise Problem(422, f"query parameter {name!r} is not accepted")

    async def _client_of(self, scope: Scope) -> str:
        """Whose budget a write spends: the verified principal's, else the peer address's.
        The verification is the one the route makes next (remembered, see auth.py)."""
        authorization = Headers(scope=scope).get("authorization", "")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token:
            try:
                principal = await self.verifier.verify(token.strip())
            except InvalidToken:
                pass
            else:
                return f"sub:{principal.user_id}"
        client = scope.get("client")
        return f"ip:{client[0]}" if client else "ip:unknown"

    def _check_rate(self, client: str) -> None:
        wait_s = self.budget.take(client)
        if wait_s > 0:
            retry_after = max(1, math.ceil(wait_s))
            raise Problem(
                429,
                f"too many writes: the budget is {self.write_limit} per client",
                headers={"Retry-After": str(retry_after)},
            )

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            raise self._too_large()
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise self._too_large()
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)

    def _too_large(self) -> Problem:
        return Problem(413, f"the request body is larger than {self.max_body_bytes} bytes")

    def _check_json(self, body: bytes) -> None:
        """Every body, whatever its Content-Type says: FastAPI reads a body as JSON when the
        header is missing or names JSON in any case, so a narrower check could be walked
        around. No route takes another kind of body."""
        if json_depth(body) > self.max_json_depth:
            raise Problem(422, f"JSON nested deeper than {self.max_json_depth} levels")
        try:
            document = json.loads(body)
        except ValueError:
            return  # not JSON: the route's validation refuses it, naming the position
        if operator := first_operator_key(document):
            raise Problem(
                422,
                f"field names starting with '$' are not accepted: {operator}",
                errors=[{"field": operator, "message": "operator keys are not accepted"}],
            )


class WriteBudget:
    """Per-client budget of `limit` writes that refills at `limit` per `period_s` (GCRA).

    A client may spend the whole budget at once, then one write per `period_s / limit` seconds.
    The generic cell rate algorithm keeps one number per client, the time at which its budget
    will be full again, so a request costs a dict lookup; clients whose budget is full are
    dropped once per period, which bounds the memory to the clients seen in the last period.

    Hand-written (about twenty lines) rather than the `limits` library's in-memory storage:
    that storage sweeps every client's entry after each hit, so a request's cost grows with the
    number of clients (at 3,000 clients and 300 writes/s its sweeping took a whole core here).
    """

    def __init__(self, limit: int, period_s: float, clock: Callable[[], float] = time.monotonic):
        self.limit = limit
        self.period_s = period_s
        self.interval_s = period_s / limit
        # Rounding may make `limit * interval_s` exceed `period_s` by an ulp; never refuse the
        # last write of a full budget for that.
        self._tolerance_s = self.interval_s * 1e-6
        self._clock = clock
        self._full_again_at: dict[str, float] = {}
        self._next_prune_at = 0.0

    def take(self, client: str) -> float:
        """Spend one write: 0.0 if the client may write now, else seconds until it may."""
        now = self._clock()
        if now >= self._next_prune_at:
            self._prune(now)
        full_again_at = max(self._full_again_at.get(client, now), now) + self.interval_s
        if full_again_at - now > self.period_s + self._tolerance_s:
            return full_again_at - now - self.period_s
        self._full_again_at[client] = full_again_at
        return 0.0

    def _prune(self, now: float) -> None:
        self._full_again_at = {c: t for c, t in self._full_again_at.items() if t > now}
        self._next_prune_at = now + self.period_s

    def __len__(self) -> int:
        return len(self._full_again_at)


def json_depth(body: bytes) -> int:
    """The deepest nesting of arrays and objects, found without parsing (strings skipped)."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return deepest


def first_operator_key(document: Any, path: str = "") -> str | None:
    """The path of the first object key that starts with '$' (or holds a NUL), if any."""
    if isinstance(document, dict):
        for key, value in document.items():
            where = f"{path}.{key}" if path else key
            if key.startswith("$") or "\x00" in key:
                return where
            if found := first_operator_key(value, where):
                return found
    elif isinstance(document, list):
        for index, value in enumerate(document):
            if found := first_operator_key(value, f"{path}[{index}]"):
                return found
    return None


def _replay(body: bytes, receive: Receive) -> Receive:
    """Hand the app the body we already read, then whatever the connection says next."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay

"""Idempotency-Key on the use cases that create something: a retry gets the first result.

The created aggregate's id is derived from the caller and the key, so a retried request's
insert is refused on that id (AlreadyStored) and the first result is found by it. The record
stored with the aggregate (the key, a hash of the request, the aggregate as first returned) is
written in the same single-document write as the aggregate and its events. The same key with
another request is refused. Keys are per caller: two callers never share one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from bson import ObjectId

from hirestream.shared.service_layer.errors import Conflict, InvalidRequest
from hirestream.shared.service_layer.unit_of_work import IdempotencyRecord


def derived_id(caller: str, key: str) -> str:
    """The id of what `caller`'s request with `key` creates: 12 bytes of SHA-256 of both, as an
    ObjectId's 24 hex digits. Reproducible by whoever knows both; ids were never secrets."""
    return str(ObjectId(hashlib.sha256(f"{caller}\x00{key}".encode()).digest()[:12]))


def request_hash(request: Any) -> str:
    """A hash of what the request asks for (JSON-able, key order ignored)."""
    canonical = json.dumps(request, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class IdempotentRequest:
    """A creating request that carried an Idempotency-Key."""

    caller: str
    key: str
    request_hash: str

    @property
    def aggregate_id(self) -> str:
        return derived_id(self.caller, self.key)

    def record(self, first_response: bytes) -> IdempotencyRecord:
        return IdempotencyRecord(self.key, self.request_hash, first_response)

    def first_response(self, stored: IdempotencyRecord | None) -> bytes:
        """What the first request with this key got; refused if the key named another request,
        or if nothing is kept to replay (the record was erased with the person's data)."""
        if stored is None:
            raise Conflict("this Idempotency-Key was used before")
        if stored.request_hash != self.request_hash:
            raise InvalidRequest(
                "this Idempotency-Key was used for a different request", field="Idempotency-Key"
            )
        return stored.first_response


def new_id(request: IdempotentRequest | None) -> str:
    """The id of a new aggregate: derived when the request carried a key, fresh otherwise."""
    return str(ObjectId()) if request is None else request.aggregate_id

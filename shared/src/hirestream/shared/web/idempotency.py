"""Idempotency-Key on the routes that create something: a retry gets the first response.

The created document carries the key's record (the key, a hash of the request, and the first
response: status, headers and the body's exact bytes) and is stored in one single-document
write together with its events. Its `_id` is derived from the caller and the key, so a retry's
insert fails on that `_id` and the first response is found by it: one lookup by `_id` (on
FerretDB v1 the only lookup that does not read the whole collection; bench/README.md). The
same key with another request is refused with 422. Keys are per caller: two callers never
share one.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any

from bson import ObjectId
from fastapi import Header, Response

from hirestream.shared.storage.mongo import Document
from hirestream.shared.web.problems import Problem

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        pattern=r"^[\x21-\x7e]+$",
        description="Retrying with the same key returns the first response",
    ),
]
REPLAYED_HEADER = "Idempotent-Replayed"


def derived_id(caller: str, key: str) -> ObjectId:
    """The `_id` of what `caller`'s request with `key` creates: 12 bytes of SHA-256 of both.
    Reproducible by whoever knows the caller and the key; ids were never secrets."""
    return ObjectId(hashlib.sha256(f"{caller}\x00{key}".encode()).digest()[:12])


def new_id(caller: str, key: str | None) -> str:
    """The id of a new document, as a 24-hex string: derived from the caller and the key when
    the request has one, so a retry finds the first response by `_id`; fresh otherwise."""
    return str(ObjectId() if key is None else derived_id(caller, key))


def request_hash(request: Any) -> str:
    """A hash of what the request asks for (JSON-able, key order ignored)."""
    canonical = json.dumps(request, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def first_response(
    key: str | None, hashed_request: str, *, status: int, headers: dict[str, str], body: bytes
) -> Document | None:
    """The record to store in the created document; None when the request had no key."""
    if key is None:
        return None
    return {
        "key": key,
        "request_hash": hashed_request,
        "status": status,
        "headers": headers,
        "body": body,
    }


def replay(record: Document, hashed_request: str) -> Response:
    """The first response again, marked as replayed; 422 if the key now names another request."""
    if record["request_hash"] != hashed_request:
        raise Problem(422, "this Idempotency-Key was used for a different request")
    body = record["body"]
    if not isinstance(body, bytes):  # stored as fields before the bytes were kept
        body = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(
        body,
        status_code=record["status"],
        media_type="application/json",
        headers={**record.get("headers", {}), REPLAYED_HEADER: "true"},
    )

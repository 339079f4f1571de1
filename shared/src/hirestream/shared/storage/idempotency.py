"""How an aggregate's document keeps the Idempotency-Key record of the request that made it."""

from __future__ import annotations

from hirestream.shared.service_layer.unit_of_work import IdempotencyRecord, StoredRequest
from hirestream.shared.storage.mongo import Document


def idempotency_fields(record: IdempotencyRecord | None) -> Document:
    """How an aggregate's document keeps the Idempotency-Key record of the request that made it
    (null when there was no key, and once erased with the person's data)."""
    if record is None:
        return {"idempotency": None}
    return {
        "idempotency": {
            "key": record.key,
            "request_hash": record.request_hash,
            "body": record.first_response,
        }
    }


def stored_request_of(document: Document | None) -> StoredRequest | None:
    """What `idempotency_fields` stored in a document, read back (None: no such document)."""
    if document is None:
        return None
    stored = document.get("idempotency")
    if not stored:
        return StoredRequest(None)
    return StoredRequest(
        IdempotencyRecord(stored["key"], stored["request_hash"], bytes(stored["body"]))
    )

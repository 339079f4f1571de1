"""The `Idempotency-Key` header of the creating routes, and the request it makes idempotent."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Header, Response

from hirestream.shared.service_layer.idempotency import IdempotentRequest, request_hash

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


def idempotent(caller: str, key: str | None, request: Any) -> IdempotentRequest | None:
    """The request as the use case needs it, when it carried a key; `request` is what it asks
    for, as JSON-able data (its hash tells a retry from another request with the same key)."""
    return None if key is None else IdempotentRequest(caller, key, request_hash(request))


def created_response(
    body: bytes, *, location: str, replayed: bool, headers: dict[str, str] | None = None
) -> Response:
    """201 with the created resource's bytes and `Location`; a replay says so."""
    headers = {**(headers or {}), "Location": location}
    if replayed:
        headers[REPLAYED_HEADER] = "true"
    return Response(body, status_code=201, media_type="application/json", headers=headers)

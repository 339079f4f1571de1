"""Cursor pagination, newest first, that stays correct while documents are added.

A cursor is the position after the last item returned: its sort time and `_id`. The next page
asks for what sorts after that position, not for an offset, so new documents (which sort
first) neither shift nor repeat later pages. Opaque to clients: base64 of a small JSON.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId
from bson.errors import InvalidId
from pymongo import DESCENDING

Document = dict[str, Any]


class InvalidCursor(ValueError):
    """The cursor was not made by this service."""


def newest_first(time_field: str) -> list[tuple[str, int]]:
    return [(time_field, DESCENDING), ("_id", DESCENDING)]


def after_cursor(time_field: str, cursor: str) -> Document:
    """The filter for "sorts after the cursor's position" in `newest_first` order."""
    at, last_id = _decode(cursor)
    return {
        "$or": [
            {time_field: {"$lt": at}},
            {time_field: at, "_id": {"$lt": last_id}},
        ]
    }


def cursor_after(document: Document, time_field: str) -> str:
    at: datetime = document[time_field]
    doc_id = document["_id"]
    # Ids are ObjectIds or strings (deterministic ids): the cursor says which, to compare alike.
    kind = "oid" if isinstance(doc_id, ObjectId) else "str"
    position = {"t": int(at.timestamp() * 1000), "id": str(doc_id), "k": kind}
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode().rstrip("=")


def page_of(
    documents: list[Document], limit: int, time_field: str
) -> tuple[list[Document], str | None]:
    """Split a `limit + 1` fetch into the page and the next cursor (None on the last page)."""
    page = documents[:limit]
    more = len(documents) > limit
    return page, (cursor_after(page[-1], time_field) if more else None)


def _decode(cursor: str) -> tuple[datetime, ObjectId | str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        position = json.loads(raw)
        at = datetime.fromtimestamp(int(position["t"]) / 1000, tz=UTC)
        if position.get("k", "oid") == "str":
            if not isinstance(position["id"], str):
                raise TypeError("id")
            return at, position["id"]
        return at, ObjectId(position["id"])
    except (
        binascii.Error,
        ValueError,
        KeyError,
        TypeError,
        InvalidId,
        OverflowError,
        OSError,
    ) as error:
        # OverflowError/OSError: a time far outside what datetime can hold
        raise InvalidCursor(cursor) from error

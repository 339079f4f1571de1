"""Cursor pagination, newest first, that stays correct while documents are added.

A cursor is the position after the last item returned: its sort time and `_id`. The next page
asks for what sorts after that position, not for an offset, so new documents (which sort
first) neither shift nor repeat later pages. Opaque to clients: base64 of a small JSON.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Generic, TypeVar

from bson import ObjectId
from bson.errors import InvalidId
from pydantic import BaseModel
from pymongo import DESCENDING

from hirestream.shared.storage.mongo import Document

T = TypeVar("T")
U = TypeVar("U")


class Page(BaseModel, Generic[T]):
    """One page of a list: its items, and the cursor of the next page (null on the last)."""

    items: list[T]
    next_cursor: str | None

    def map(self, item: Callable[[T], U]) -> Page[U]:
        """The same page, each item shown as `item` makes it."""
        return Page[U](items=[item(one) for one in self.items], next_cursor=self.next_cursor)


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
    documents: list[Document], limit: int, time_field: str, item: Callable[[Document], T]
) -> Page[T]:
    """A `limit + 1` fetch as a page of `limit` items (each made by `item`) and the cursor of
    the next page (None on the last page)."""
    page = documents[:limit]
    more = len(documents) > limit
    return Page[T](
        items=[item(document) for document in page],
        next_cursor=cursor_after(page[-1], time_field) if more else None,
    )


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

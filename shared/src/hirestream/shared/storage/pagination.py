"""Cursor pagination, newest first (or by a number, highest first), that stays correct while
documents are added.

A cursor is the position after the last item returned: its sort time (or number) and `_id`.
The next page asks for what sorts after that position, not for an offset, so new documents
neither shift nor repeat later pages. Opaque to clients: base64 of a small JSON.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

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


def after_number(field: str, cursor: str) -> Document:
    """The filter for "sorts after the cursor's position" in `newest_first(field)` order of a
    numeric (dotted) field, highest first. A cursor of another order or field is refused."""
    value, last_id = _decode_number(cursor, field)
    return {
        "$or": [
            {field: {"$lt": value}},
            {field: value, "_id": {"$lt": last_id}},
        ]
    }


def cursor_after(document: Document, time_field: str) -> str:
    at: datetime = document[time_field]
    position = {"t": int(at.timestamp() * 1000), **_id_of(document)}
    return _encode(position)


def number_cursor_after(document: Document, field: str) -> str:
    """The cursor after `document` in highest-first order of the numeric `field`."""
    value: Any = document
    for part in field.split("."):
        value = value[part]
    return _encode({"f": field, "v": value, **_id_of(document)})


def page_of(
    documents: list[Document],
    limit: int,
    time_field: str,
    item: Callable[[Document], T],
    *,
    cursor: Callable[[Document, str], str] = cursor_after,
) -> Page[T]:
    """A `limit + 1` fetch as a page of `limit` items (each made by `item`) and the cursor of
    the next page (None on the last page); `cursor` makes it (`number_cursor_after` for a
    numeric field)."""
    page = documents[:limit]
    more = len(documents) > limit
    return Page[T](
        items=[item(document) for document in page],
        next_cursor=cursor(page[-1], time_field) if more else None,
    )


def _id_of(document: Document) -> dict[str, str]:
    doc_id = document["_id"]
    # Ids are ObjectIds or strings (deterministic ids): the cursor says which, to compare alike.
    return {"id": str(doc_id), "k": "oid" if isinstance(doc_id, ObjectId) else "str"}


def _encode(position: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode().rstrip("=")


CURSOR_ERRORS = (
    binascii.Error,
    ValueError,
    KeyError,
    TypeError,
    InvalidId,
    OverflowError,  # OverflowError/OSError: a time far outside what datetime can hold
    OSError,
)


def _decode(cursor: str) -> tuple[datetime, ObjectId | str]:
    try:
        position = _position(cursor)
        at = datetime.fromtimestamp(int(position["t"]) / 1000, tz=UTC)
        return at, _last_id(position)
    except CURSOR_ERRORS as error:
        raise InvalidCursor(cursor) from error


def _decode_number(cursor: str, field: str) -> tuple[float, ObjectId | str]:
    try:
        position = _position(cursor)
        value = position["v"]
        if position["f"] != field or isinstance(value, bool):
            raise ValueError("another order's cursor")
        if not isinstance(value, int | float) or not math.isfinite(value):
            raise TypeError("v")
        return value, _last_id(position)
    except CURSOR_ERRORS as error:
        raise InvalidCursor(cursor) from error


def _position(cursor: str) -> dict[str, Any]:
    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    position = json.loads(raw)
    if not isinstance(position, dict):
        raise TypeError("position")
    return position


def _last_id(position: dict[str, Any]) -> ObjectId | str:
    if position.get("k", "oid") == "str":
        if not isinstance(position["id"], str):
            raise TypeError("id")
        return str(position["id"])
    return ObjectId(position["id"])

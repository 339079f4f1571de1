"""The correlation id of the work in hand: an HTTP request's, or the event a consumer handles.

Set where the work enters (the HTTP middleware, the consumers' middleware); read where events
are made, so every event a request or an event causes carries it, and bound into every log line.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import structlog

_current: ContextVar[str | None] = ContextVar("correlation_id", default=None)


def current_correlation_id() -> str | None:
    return _current.get()


@contextmanager
def correlated(correlation_id: str | None) -> Iterator[None]:
    token = _current.set(correlation_id)
    try:
        with structlog.contextvars.bound_contextvars(correlation_id=correlation_id):
            yield
    finally:
        _current.reset(token)

"""Waiting for eventual consistency: poll until a probe returns something, or time out."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T | None]], *, timeout_s: float = 30, every_s: float = 0.2
) -> T:
    """The first non-None, truthy result of `probe`; TimeoutError if none comes in time."""
    async with asyncio.timeout(timeout_s):
        # Polling is the point: the state lives in another process, with no event to await.
        while not (result := await probe()):  # noqa: ASYNC110
            await asyncio.sleep(every_s)
    return result

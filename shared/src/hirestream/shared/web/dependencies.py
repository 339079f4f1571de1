"""Route dependencies every service's routers use."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import Depends

T = TypeVar("T")


def made_by(factory: Callable[[], T]) -> Any:
    """`Depends(factory)`, but called on the event loop: FastAPI runs a plain function
    dependency in its thread pool, a thread hop on every request for what is a constructor."""

    async def make() -> T:
        return factory()

    return Depends(make)

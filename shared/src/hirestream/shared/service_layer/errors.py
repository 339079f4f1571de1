"""What a use case says when it cannot do what was asked. Entrypoints translate these: the HTTP
API into problem details (web/problems.py), handlers into a dead letter."""

from __future__ import annotations

from typing import Any


class UseCaseError(Exception):
    """`detail` is said to the caller; `extensions` become members of the problem document."""

    def __init__(self, detail: str, *, retry_after_s: int | None = None, **extensions: Any):
        super().__init__(detail)
        self.detail = detail
        self.retry_after_s = retry_after_s
        self.extensions = extensions


class NotFound(UseCaseError):
    """No such thing, or none the caller may see (whose existence is not their business)."""


class Forbidden(UseCaseError):
    """The caller may not do this to this thing."""


class Conflict(UseCaseError):
    """The thing's state does not allow it (closed, already done, an illegal move)."""


class PreconditionRequired(UseCaseError):
    """A change needs the version the caller saw (If-Match)."""


class PreconditionFailed(UseCaseError):
    """The caller saw an older version than the one stored."""


class InvalidRequest(UseCaseError):
    """Well-formed but not acceptable; `field` names the part at fault."""

    def __init__(self, detail: str, *, field: str | None = None, **extensions: Any) -> None:
        if field is not None:
            extensions["errors"] = [{"field": field, "message": detail}]
        super().__init__(detail, **extensions)

"""Field types every event payload uses, serialised the way the contract says."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, Field, PlainSerializer, WithJsonSchema


def _to_utc_ms(value: datetime) -> datetime:
    # Milliseconds: what MongoDB stores and the wire carries, so a round trip is exact.
    return value.astimezone(UTC).replace(microsecond=value.microsecond // 1000 * 1000)


def _rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


UtcDateTime = Annotated[
    AwareDatetime,
    AfterValidator(_to_utc_ms),
    PlainSerializer(_rfc3339, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
"""A timezone-aware instant, held in UTC to the millisecond, written as RFC 3339 with `Z`."""


# MongoDB stores integers in at most 8 bytes: every integer we accept must fit.
MAX_INT64 = 2**63 - 1
NonNegativeInt64 = Annotated[int, Field(ge=0, le=MAX_INT64)]
PositiveInt64 = Annotated[int, Field(ge=1, le=MAX_INT64)]


def utc_now() -> datetime:
    """Now, in UTC, at the millisecond precision that MongoDB stores and events carry."""
    return _to_utc_ms(datetime.now(UTC))


def normalised_skills(skills: list[str]) -> list[str]:
    """Skills as events carry them (docs/events.md): lowercase, trimmed, inner spaces collapsed,
    empty ones dropped, first occurrence kept."""
    cleaned = (" ".join(skill.split()).lower() for skill in skills)
    return list(dict.fromkeys(skill for skill in cleaned if skill))

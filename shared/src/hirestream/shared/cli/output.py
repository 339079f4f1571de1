"""What the CLI prints: aligned tables or JSON lines, ages, and the times it accepts."""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

DURATION = re.compile(r"(\d+)([smhdw])")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """Columns padded to their widest cell; the last column is left ragged."""
    cells = [[str(cell) for cell in row] for row in [headers, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return [
        "  ".join(cell.ljust(widths[i]) if i < len(row) - 1 else cell for i, cell in enumerate(row))
        for row in cells
    ]


def json_line(value: dict[str, Any]) -> str:
    return json.dumps(value, default=str, ensure_ascii=False, separators=(",", ":"))


def age(seconds: float | None) -> str:
    """A duration as people read it: 45s, 12m, 3h05m, 2d04h."""
    if seconds is None:
        return "-"
    whole = max(int(seconds), 0)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def parse_duration(text: str) -> timedelta:
    """'90s', '15m', '2h', '7d', '1w', or several together: '1h30m'."""
    cleaned = text.strip().lower()
    parts = DURATION.findall(cleaned)
    if not parts or "".join(n + u for n, u in parts) != cleaned:
        raise ValueError(f"not a duration: {text!r} (e.g. 30m, 2h, 7d, 1h30m)")
    return timedelta(seconds=sum(int(number) * UNITS[unit] for number, unit in parts))


def instant(text: str, *, now: datetime | None = None) -> datetime:
    """A point in time: a duration back from now ('2h' is two hours ago) or an ISO 8601
    time (UTC unless it says otherwise)."""
    try:
        return (now or datetime.now(UTC)) - parse_duration(text)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither a duration (30m, 2h, 7d) nor an ISO 8601 time"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)

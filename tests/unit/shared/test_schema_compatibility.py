"""Event schemas evolve compatibly within a version: each committed schema accepts everything
it accepted when its version was first committed, and keeps every field (the checker below
says what would break a consumer; git says what the first commit held)."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from hirestream.shared.events.catalog import EVENT_TYPES, schema_path
from hirestream.shared.events.compatibility import breaking_changes

ROOT = Path(__file__).resolve().parents[3]
SCHEMAS = ROOT / "schemas"


def first_committed(path: Path) -> dict[str, Any]:
    """The schema file as the commit that added it held it."""
    relative = str(path.relative_to(ROOT))
    added = subprocess.run(
        ["git", "log", "--diff-filter=A", "--format=%H", "--", relative],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert added, f"{relative} is not committed: commit it before it is published"
    shown = subprocess.run(
        ["git", "show", f"{added[-1]}:{relative}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    schema: dict[str, Any] = json.loads(shown)
    return schema


@pytest.mark.parametrize("event_type", EVENT_TYPES, ids=lambda t: f"{t.name}/{t.version}")
def test_the_committed_schema_is_compatible_with_its_first_version(event_type: Any) -> None:
    path = SCHEMAS / schema_path(event_type)
    current = json.loads(path.read_text())
    assert breaking_changes(first_committed(path), current) == []


def posting_closed() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((SCHEMAS / "posting.closed" / "1.json").read_text())
    return schema


def changed(change: Any) -> list[str]:
    new = copy.deepcopy(posting_closed())
    change(new)
    return breaking_changes(posting_closed(), new)


def test_a_new_optional_field_and_a_new_enum_value_are_compatible() -> None:
    def widen(schema: dict[str, Any]) -> None:
        schema["properties"]["note"] = {"type": "string"}
        schema["$defs"]["CloseReason"]["enum"].append("merged")

    assert changed(widen) == []


def test_a_removed_field_breaks() -> None:
    assert changed(lambda s: s["properties"].pop("org")) == ["data.org: field removed"]


def test_a_newly_required_field_breaks() -> None:
    def require(schema: dict[str, Any]) -> None:
        schema["properties"]["note"] = {"type": "string"}
        schema["required"].append("note")

    assert changed(require) == ["data.note: newly required"]


def test_a_narrowed_type_breaks() -> None:
    def narrow(schema: dict[str, Any]) -> None:
        schema["properties"]["org"] = {"type": "integer"}

    assert changed(narrow) == ["data.org: type narrowed, ['string'] -> ['integer']"]


def test_a_removed_enum_value_breaks() -> None:
    def drop(schema: dict[str, Any]) -> None:
        schema["$defs"]["CloseReason"]["enum"].remove("expired")

    assert changed(drop) == ["data.reason: enum values removed: ['expired']"]


def test_a_tighter_bound_breaks() -> None:
    def bound(schema: dict[str, Any]) -> None:
        schema["properties"]["version"]["maximum"] = 1000

    assert changed(bound) == ["data.version: maximum lowered to 1000"]

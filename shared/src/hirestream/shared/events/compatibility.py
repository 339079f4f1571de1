"""Whether a payload schema may replace another within the same event version.

A consumer written against a schema version must go on accepting every event of that version,
old ones read again from the log included. So a schema may change within its version only so
that it accepts everything it accepted before and keeps every field it had: new optional
fields, new enum values, wider bounds. Anything else (a field removed or newly required, a type
narrowed, an enum value removed, a tighter bound or pattern) needs a new version of the event
type, published beside the old one (docs/events.md, "Compatibility").
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

_LOWER_BOUNDS = ("minimum", "exclusiveMinimum", "minLength", "minItems")
_UPPER_BOUNDS = ("maximum", "exclusiveMaximum", "maxLength", "maxItems")


def breaking_changes(old: Schema, new: Schema) -> list[str]:
    """What in `new` would make a consumer of `old` reject an event; empty when compatible."""
    return _compare(old, new, old, new, "data")


def _resolve(schema: Schema, root: Schema) -> Schema:
    while "$ref" in schema:
        name = schema["$ref"].removeprefix("#/$defs/")
        schema = root["$defs"][name]
    return schema


def _alternatives(schema: Schema, root: Schema) -> list[Schema]:
    schema = _resolve(schema, root)
    if "anyOf" in schema:
        return [alt for option in schema["anyOf"] for alt in _alternatives(option, root)]
    return [schema]


def _types(schema: Schema, root: Schema) -> set[str]:
    types: set[str] = set()
    for alternative in _alternatives(schema, root):
        kind = alternative.get("type", "any")
        types |= set(kind) if isinstance(kind, list) else {kind}
    return types


def _compare(old: Schema, new: Schema, old_root: Schema, new_root: Schema, at: str) -> list[str]:
    problems: list[str] = []
    old_types, new_types = _types(old, old_root), _types(new, new_root)
    lost = old_types - new_types
    if "number" in new_types:
        lost.discard("integer")  # every integer is a number
    if lost and "any" not in new_types:
        problems.append(f"{at}: type narrowed, {sorted(old_types)} -> {sorted(new_types)}")
    old_alternatives = _alternatives(old, old_root)
    new_alternatives = _alternatives(new, new_root)
    for old_one in old_alternatives:
        kind = old_one.get("type")
        new_one = next((n for n in new_alternatives if n.get("type") == kind), None)
        if new_one is None:
            continue
        problems += _compare_one(old_one, new_one, old_root, new_root, at)
    return problems


def _compare_one(
    old: Schema, new: Schema, old_root: Schema, new_root: Schema, at: str
) -> list[str]:
    problems: list[str] = []
    if "enum" in old and "enum" in new:
        removed = [value for value in old["enum"] if value not in new["enum"]]
        if removed:
            problems.append(f"{at}: enum values removed: {removed}")
    elif "enum" in new or ("const" in new and new.get("const") != old.get("const")):
        problems.append(f"{at}: values restricted")
    for bound in _LOWER_BOUNDS:
        if bound in new and new[bound] > old.get(bound, float("-inf")):
            problems.append(f"{at}: {bound} raised to {new[bound]}")
    for bound in _UPPER_BOUNDS:
        if bound in new and new[bound] < old.get(bound, float("inf")):
            problems.append(f"{at}: {bound} lowered to {new[bound]}")
    if "pattern" in new and new["pattern"] != old.get("pattern"):
        problems.append(f"{at}: pattern changed to {new['pattern']!r}")
    if old.get("type") == "object":
        problems += _compare_objects(old, new, old_root, new_root, at)
    if old.get("type") == "array" and "items" in old and "items" in new:
        problems += _compare(old["items"], new["items"], old_root, new_root, f"{at}[]")
    return problems


def _compare_objects(
    old: Schema, new: Schema, old_root: Schema, new_root: Schema, at: str
) -> list[str]:
    problems: list[str] = []
    old_properties = old.get("properties", {})
    new_properties = new.get("properties", {})
    for name in old_properties:
        if name not in new_properties:
            problems.append(f"{at}.{name}: field removed")
    newly_required = set(new.get("required", [])) - set(old.get("required", []))
    problems += [f"{at}.{name}: newly required" for name in sorted(newly_required)]
    if new.get("additionalProperties") is False and old.get("additionalProperties") is not False:
        problems.append(f"{at}: unknown fields now refused")
    for name, old_property in old_properties.items():
        if name in new_properties:
            problems += _compare(
                old_property, new_properties[name], old_root, new_root, f"{at}.{name}"
            )
    return problems

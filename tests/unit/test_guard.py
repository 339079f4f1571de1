"""The request guard's pure parts: JSON depth without parsing, operator keys."""

import json

import pytest

from hirestream.shared.web.guard import first_operator_key, json_depth


@pytest.mark.parametrize(
    ("body", "depth"),
    [
        (b"{}", 1),
        (b'{"a": [1, {"b": 2}]}', 3),
        (b'{"a": "[[[[{{{{"}', 1),  # brackets inside strings do not count
        (b'{"a": "\\"[[["}', 1),  # nor after an escaped quote
        (b"[" * 5000 + b"]" * 5000, 5000),
        (b"42", 0),
    ],
)
def test_json_depth(body: bytes, depth: int) -> None:
    assert json_depth(body) == depth


@pytest.mark.parametrize(
    ("document", "found"),
    [
        ({"title": {"$ne": ""}}, "title.$ne"),
        ({"$where": "sleep(1000)"}, "$where"),
        ({"skills": [{"ok": 1}, {"$gt": 1}]}, "skills[1].$gt"),
        ({"a\x00b": 1}, "a\x00b"),
        ({"channels": {"posting.created": ["email"]}}, None),  # dotted: the models decide
        ({"title": "$ne is fine inside a value"}, None),
        ([1, 2, 3], None),
    ],
)
def test_operator_keys(document: object, found: str | None) -> None:
    assert first_operator_key(json.loads(json.dumps(document))) == found

"""The request guard's pure parts: JSON depth without parsing, operator keys, write budgets."""

import json

import pytest

from hirestream.shared.web.guard import WriteBudget, first_operator_key, json_depth


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


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_write_budget_allows_the_whole_budget_at_once_then_refills_at_the_rate() -> None:
    clock = FakeClock()
    budget = WriteBudget(limit=7, period_s=60.0, clock=clock)  # 60/7 is not exact in binary
    assert [budget.take("a") for _ in range(7)] == [0.0] * 7
    wait = budget.take("a")
    assert wait == pytest.approx(60.0 / 7)  # the next write is one interval away
    assert budget.take("b") == 0.0  # another client has its own budget

    clock.now += 60.0 / 7
    assert budget.take("a") == 0.0  # one interval later, exactly one more write
    assert budget.take("a") > 0


def test_write_budget_forgets_clients_whose_budget_is_full_again() -> None:
    clock = FakeClock()
    budget = WriteBudget(limit=2, period_s=10.0, clock=clock)
    for client in ("a", "b", "c"):
        budget.take(client)
    assert len(budget) == 3
    clock.now += 10.0  # every budget is full again; the next call prunes
    budget.take("d")
    assert len(budget) == 1
    assert [budget.take("a"), budget.take("a"), budget.take("a") > 0] == [0.0, 0.0, True]

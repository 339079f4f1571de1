"""Triage: a posting's applications best match first (`sort=-match`), paged by a keyset cursor
over (match score, id), and the cursor's encoding."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from bson import ObjectId

from hirestream.applications.domain import Application, ApplicationOrder
from hirestream.applications.services import ApplicationsUnitOfWork, list_applications
from hirestream.shared.events.applications import ApplicationStatus, Match
from hirestream.shared.service_layer.errors import InvalidRequest
from hirestream.shared.storage.pagination import (
    InvalidCursor,
    after_cursor,
    after_number,
    cursor_after,
    number_cursor_after,
    page_of,
)
from tests.support.applications import (
    ADMIN,
    EMPLOYER,
    NOW,
    POSTING_ID,
    FakeApplications,
    application_in,
)

S = ApplicationStatus
Uow = Callable[[], ApplicationsUnitOfWork]
SCORE = "match.score"


def scored(application_id: str, score: float, **changes: Any) -> Application:
    return application_in(
        S.SUBMITTED,
        application_id=application_id,
        candidate_id=f"cand-{application_id}",
        match=Match(score=score, matched_skills=[], missing_skills=[]),
        **changes,
    )


def document(doc_id: ObjectId | str, score: float) -> dict[str, Any]:
    return {"_id": doc_id, "match": {"score": score}, "submitted_at": NOW}


def matches(query: dict[str, Any], doc: dict[str, Any]) -> bool:
    """The `$or` of an after-the-cursor filter, evaluated as MongoDB would on `doc`."""

    def holds(condition: dict[str, Any]) -> bool:
        for field, wanted in condition.items():
            value: Any = doc
            for part in field.split("."):
                value = value[part]
            if isinstance(wanted, dict):
                if not value < wanted["$lt"]:
                    return False
            elif value != wanted:
                return False
        return True

    return any(holds(branch) for branch in query["$or"])


# --- the cursor -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "doc_id", [ObjectId("6650f1c2e4b0a1b2c3d4e600"), "6650f1c2e4b0a1b2c3d4e600"], ids=type
)
def test_a_number_cursor_is_the_position_after_its_document(doc_id: ObjectId | str) -> None:
    cursor = number_cursor_after(document(doc_id, 0.667), SCORE)

    assert after_number(SCORE, cursor) == {
        "$or": [
            {SCORE: {"$lt": 0.667}},
            {SCORE: 0.667, "_id": {"$lt": doc_id}},
        ]
    }
    assert "=" not in cursor  # url-safe, unpadded: usable as a query parameter as is


def test_after_the_cursor_is_lower_scores_and_equal_scores_with_lower_ids() -> None:
    last = document("b", 0.5)
    after = after_number(SCORE, number_cursor_after(last, SCORE))

    assert matches(after, document("z", 0.25))
    assert matches(after, document("a", 0.5))
    assert not matches(after, document("b", 0.5))  # the last one returned: not again
    assert not matches(after, document("c", 0.5))
    assert not matches(after, document("a", 0.75))


def test_a_cursor_of_one_order_is_refused_by_the_other() -> None:
    time_cursor = cursor_after(document("a", 0.5), "submitted_at")
    score_cursor = number_cursor_after(document("a", 0.5), SCORE)

    with pytest.raises(InvalidCursor):
        after_number(SCORE, time_cursor)
    with pytest.raises(InvalidCursor):
        after_cursor("submitted_at", score_cursor)
    with pytest.raises(InvalidCursor):
        after_number("other.field", score_cursor)


def encoded(position: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        pytest.param("not base64 !", id="not-base64"),
        pytest.param(base64.urlsafe_b64encode(b"not json").decode(), id="not-json"),
        pytest.param(encoded([0.5, "a"]), id="a-list"),
        pytest.param(encoded({"f": SCORE, "v": True, "id": "a", "k": "str"}), id="a-bool"),
        pytest.param(encoded({"f": SCORE, "v": "0.5", "id": "a", "k": "str"}), id="a-string"),
        pytest.param(encoded({"f": SCORE, "v": float("nan"), "id": "a", "k": "str"}), id="nan"),
        pytest.param(encoded({"f": SCORE, "v": 0.5, "id": "x", "k": "oid"}), id="bad-objectid"),
        pytest.param(encoded({"f": SCORE, "v": 0.5, "id": 7, "k": "str"}), id="id-not-a-string"),
    ],
)
def test_a_cursor_this_service_did_not_make_is_refused(cursor: str) -> None:
    with pytest.raises(InvalidCursor):
        after_number(SCORE, cursor)


def test_a_page_by_score_ends_with_the_cursor_of_its_last_item() -> None:
    documents = [document("c", 0.9), document("b", 0.5), document("a", 0.5)]

    page = page_of(documents, 2, SCORE, lambda d: d["_id"], cursor=number_cursor_after)
    last = page_of(documents, 3, SCORE, lambda d: d["_id"], cursor=number_cursor_after)

    assert page.items == ["c", "b"]
    assert page.next_cursor == number_cursor_after(documents[1], SCORE)
    assert last.next_cursor is None


# --- the use case ------------------------------------------------------------------------------


@pytest.fixture
def triage(applications: FakeApplications) -> list[Application]:
    """Five applications to one posting; two share a score, and the newest is the worst."""
    made = [
        scored("6650f1c2e4b0a1b2c3d4e601", 0.25, submitted_at=NOW),
        scored("6650f1c2e4b0a1b2c3d4e602", 1.0, submitted_at=NOW + timedelta(hours=1)),
        scored("6650f1c2e4b0a1b2c3d4e603", 0.5, submitted_at=NOW + timedelta(hours=2)),
        scored("6650f1c2e4b0a1b2c3d4e604", 0.5, submitted_at=NOW + timedelta(hours=3)),
        scored("6650f1c2e4b0a1b2c3d4e605", 0.0, submitted_at=NOW + timedelta(hours=4)),
    ]
    for application in made:
        applications.put(application)
    return made


async def listed(unit_of_work: Uow, order: ApplicationOrder, limit: int = 20) -> list[str]:
    found: list[str] = []
    cursor: str | None = None
    while True:
        page = await list_applications(
            EMPLOYER,
            unit_of_work(),
            posting_id=POSTING_ID,
            status=None,
            order=order,
            limit=limit,
            cursor=cursor,
        )
        found += [application.application_id for application in page.items]
        if (cursor := page.next_cursor) is None:
            return found


async def test_best_match_first_with_ties_by_id(
    unit_of_work: Uow, triage: list[Application]
) -> None:
    assert await listed(unit_of_work, ApplicationOrder.BEST_MATCH, limit=2) == [
        triage[1].application_id,  # 1.0
        triage[3].application_id,  # 0.5, the higher id
        triage[2].application_id,  # 0.5
        triage[0].application_id,  # 0.25
        triage[4].application_id,  # 0.0
    ]


async def test_newest_first_is_the_default(unit_of_work: Uow, triage: list[Application]) -> None:
    newest = [application.application_id for application in reversed(triage)]
    assert await listed(unit_of_work, ApplicationOrder.NEWEST, limit=2) == newest
    page = await list_applications(
        EMPLOYER, unit_of_work(), posting_id=POSTING_ID, status=None, limit=20, cursor=None
    )
    assert [application.application_id for application in page.items] == newest


async def test_best_match_needs_a_posting(unit_of_work: Uow, triage: list[Application]) -> None:
    with pytest.raises(InvalidRequest) as refused:
        await list_applications(
            ADMIN,
            unit_of_work(),
            posting_id=None,
            status=None,
            order=ApplicationOrder.BEST_MATCH,
            limit=20,
            cursor=None,
        )

    assert refused.value.extensions["errors"][0]["field"] == "sort"


@pytest.mark.parametrize("value", ["-match", "-submitted_at"])
def test_the_orders_are_named_as_the_query_parameter_takes_them(value: str) -> None:
    assert ApplicationOrder(value).value == value
    assert ApplicationOrder(value).needs_posting is (value == "-match")

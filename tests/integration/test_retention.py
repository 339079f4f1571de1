"""Retention: final applications are anonymised once the period has passed, unless the
candidate applied again since (the clock restarts); open ones are never touched."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from hirestream.applications.store import ApplicationStore
from hirestream.shared.events.types import utc_now
from tests.conftest import unique_db
from tests.support.applications_integration import application_document

pytestmark = pytest.mark.integration

PERIOD = timedelta(days=180)


async def test_final_applications_past_the_period_are_anonymised(
    mongo: AsyncMongoClient[dict[str, Any]],
) -> None:
    store = ApplicationStore(mongo[unique_db("retention")]["applications"])
    expired = application_document("c-old", "rejected", age_days=200)
    recent_final = application_document("c-recent", "hired", age_days=10)
    old_but_open = application_document("c-open", "interview", age_days=400)
    returning_old = application_document("c-back", "withdrawn", age_days=300)
    returning_new = application_document("c-back", "submitted", age_days=5)
    await store.collection.insert_many(
        [expired, recent_final, old_but_open, returning_old, returning_new]
    )

    assert await store.anonymise_expired(utc_now() - PERIOD) == 1

    by_id = {d["_id"]: d async for d in store.collection.find({})}
    assert by_id[expired["_id"]]["anonymised"] is True
    assert by_id[expired["_id"]]["candidate"]["name"] == "(erased)"
    assert by_id[expired["_id"]]["cover_letter"] is None
    assert by_id[expired["_id"]]["status"] == "rejected"  # the funnel keeps its facts
    assert by_id[expired["_id"]]["match"]["score"] == 0.5
    for kept in (recent_final, old_but_open, returning_old, returning_new):
        assert by_id[kept["_id"]]["anonymised"] is False, kept["candidate"]["candidate_id"]

    assert await store.anonymise_expired(utc_now() - PERIOD) == 0  # idempotent

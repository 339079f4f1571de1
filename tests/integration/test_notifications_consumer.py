"""The notifications service records each announced posting once, over the real broker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from hirestream.notifications.app import NotificationsSettings, create_app
from tests.conftest import client_for, settings_for, unique_db
from tests.support.factories import new_posting_id, posting_created_event
from tests.support.kafka import produce
from tests.support.polling import eventually

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def notifications_db() -> str:
    return unique_db("notifications")


@pytest.fixture(scope="module")
async def notifications(
    base_env: dict[str, str], notifications_db: str
) -> AsyncIterator[httpx.AsyncClient]:
    settings = settings_for(NotificationsSettings, base_env, mongodb_database=notifications_db)
    async for client in client_for(create_app(settings)):
        yield client


async def test_a_redelivered_posting_created_is_recorded_once(
    notifications: httpx.AsyncClient,
    servers: Any,
    mongo: AsyncMongoClient[dict[str, Any]],
    notifications_db: str,
) -> None:
    posting_id = new_posting_id()
    event = posting_created_event(posting_id, title="Data Engineer")
    for _ in range(2):  # what a producer retry after a lost acknowledgement looks like
        await produce(servers.kafka_bootstrap, "posting.created", event, key=posting_id.encode())

    collection = mongo[notifications_db]["announced_postings"]
    await eventually(lambda: collection.find_one({"_id": posting_id}))
    await asyncio.sleep(2)  # time for the duplicate to be consumed too
    assert await collection.count_documents({"_id": posting_id}) == 1
    document = await collection.find_one({"_id": posting_id})
    assert document is not None
    assert document["title"] == "Data Engineer"
    assert (await notifications.get("/readyz")).status_code == 200

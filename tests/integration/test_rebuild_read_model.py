"""The postings read model can be rebuilt from the topics alone, as the command does it."""

from __future__ import annotations

from typing import Any

import pytest
from pymongo import AsyncMongoClient

from tests.conftest import unique_db
from tests.support.applications_integration import run_rebuild
from tests.support.factories import (
    new_posting_id,
    posting_closed_event,
    posting_created_event,
    posting_updated_event,
)
from tests.support.kafka import produce
from tests.support.servers import Servers

pytestmark = pytest.mark.integration


async def test_a_replay_rebuilds_the_newest_versions_and_from_scratch_repairs_a_corruption(
    servers: Servers, base_env: dict[str, str], mongo: AsyncMongoClient[dict[str, Any]]
) -> None:
    open_id, closed_id, corrupted_id = (new_posting_id() for _ in range(3))
    # Out of order across topics, with a duplicate: the replay must still end at the newest.
    for topic, value, key in [
        ("posting.updated", posting_updated_event(open_id, 2, title="Lead Data Engineer"), open_id),
        ("posting.created", posting_created_event(open_id), open_id),
        ("posting.updated", posting_updated_event(open_id, 2, title="Lead Data Engineer"), open_id),
        ("posting.created", posting_created_event(closed_id), closed_id),
        ("posting.closed", posting_closed_event(closed_id, 2), closed_id),
        ("posting.created", b"not an event", closed_id),
        ("posting.created", posting_created_event(corrupted_id), corrupted_id),
    ]:
        await produce(servers.kafka_bootstrap, topic, value, key=key.encode())
    database = unique_db("applications")
    view = mongo[database]["postings_view"]
    # A bad write left a version that never existed: a plain replay cannot overrule it.
    await view.insert_one({"_id": corrupted_id, "version": 99, "status": "closed", "org": "x"})

    run_rebuild(base_env, database)

    rebuilt_open = await view.find_one({"_id": open_id})
    assert rebuilt_open is not None
    assert (rebuilt_open["version"], rebuilt_open["title"]) == (2, "Lead Data Engineer")
    rebuilt_closed = await view.find_one({"_id": closed_id})
    assert rebuilt_closed is not None
    assert (rebuilt_closed["version"], rebuilt_closed["status"]) == (2, "closed")
    corrupted = await view.find_one({"_id": corrupted_id})
    assert corrupted is not None
    assert corrupted["version"] == 99

    run_rebuild(base_env, database, "--from-scratch")

    repaired = await view.find_one({"_id": corrupted_id})
    assert repaired is not None
    assert (repaired["version"], repaired["status"], repaired["org"]) == (1, "open", "acme")
    rebuilt_again = await view.find_one({"_id": open_id})
    assert rebuilt_again is not None
    assert rebuilt_again["version"] == 2

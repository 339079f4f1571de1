"""The postings read model can be rebuilt from the topics alone, as the command does it."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from tests.conftest import unique_db
from tests.support.factories import (
    new_posting_id,
    posting_closed_event,
    posting_created_event,
    posting_updated_event,
)
from tests.support.kafka import produce
from tests.support.servers import Servers

pytestmark = pytest.mark.integration


def run_rebuild(base_env: dict[str, str], database: str, *flags: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "hirestream.applications.rebuild_read_model", *flags],
        env={**os.environ, **base_env, "MONGODB_DATABASE": database, "LOG_FORMAT": "json"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stderr


async def test_replaying_the_topics_rebuilds_the_newest_version_of_every_posting(
    servers: Servers, base_env: dict[str, str], mongo: AsyncMongoClient[dict[str, Any]]
) -> None:
    open_id, closed_id = new_posting_id(), new_posting_id()
    # Out of order across topics, with a duplicate: the replay must still end at the newest.
    for topic, value, key in [
        ("posting.updated", posting_updated_event(open_id, 2, title="Lead Data Engineer"), open_id),
        ("posting.created", posting_created_event(open_id), open_id),
        ("posting.updated", posting_updated_event(open_id, 2, title="Lead Data Engineer"), open_id),
        ("posting.created", posting_created_event(closed_id), closed_id),
        ("posting.closed", posting_closed_event(closed_id, 2), closed_id),
        ("posting.created", b"not an event", closed_id),
    ]:
        await produce(servers.kafka_bootstrap, topic, value, key=key.encode())

    database = unique_db("applications")
    run_rebuild(base_env, database)

    view = mongo[database]["postings_view"]
    rebuilt_open = await view.find_one({"_id": open_id})
    assert rebuilt_open is not None
    assert (rebuilt_open["version"], rebuilt_open["title"]) == (2, "Lead Data Engineer")
    rebuilt_closed = await view.find_one({"_id": closed_id})
    assert rebuilt_closed is not None
    assert (rebuilt_closed["version"], rebuilt_closed["status"]) == (2, "closed")


async def test_from_scratch_repairs_a_corrupted_read_model(
    servers: Servers, base_env: dict[str, str], mongo: AsyncMongoClient[dict[str, Any]]
) -> None:
    posting_id = new_posting_id()
    await produce(
        servers.kafka_bootstrap,
        "posting.created",
        posting_created_event(posting_id),
        key=posting_id.encode(),
    )
    database = unique_db("applications")
    view = mongo[database]["postings_view"]
    # A bad write left a version that never existed: a plain replay cannot overrule it.
    await view.insert_one({"_id": posting_id, "version": 99, "status": "closed", "org": "x"})

    run_rebuild(base_env, database)
    corrupted = await view.find_one({"_id": posting_id})
    assert corrupted is not None
    assert corrupted["version"] == 99

    run_rebuild(base_env, database, "--from-scratch")
    repaired = await view.find_one({"_id": posting_id})
    assert repaired is not None
    assert (repaired["version"], repaired["status"], repaired["org"]) == (1, "open", "acme")

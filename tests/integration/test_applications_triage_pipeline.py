"""Triage and the pipeline on the real broker and database (SCRAM-authenticated Kafka, the
MongoDB-protocol server of the stack):

- `sort=-match` pages a posting's applications best match first with a keyset cursor, with
  no gaps and no repeats while new applications arrive between pages;
- `/postings/{posting_id}/pipeline` equals what the events on the topics say, computed here
  independently; a redelivered event changes nothing; a poison record is dead-lettered by the
  pipeline's own group; and the replay command rebuilds the projection from scratch.
"""

from __future__ import annotations

import os
import random
import statistics
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from hirestream.applications.app import ApplicationsSettings, create_app
from tests.conftest import client_for, settings_for, unique_db
from tests.support.applications import STATUS_CHANGED, SUBMITTED
from tests.support.applications_integration import (
    Board,
    apply,
    as_admin,
    as_candidate,
    as_employer,
    for_posting,
    moved,
    new_candidate,
    new_org,
)
from tests.support.http import problem_fields
from tests.support.kafka import Record, keyed, produce, read_until
from tests.support.polling import eventually
from tests.support.servers import Servers

pytestmark = pytest.mark.integration

# Eight skills: match scores in eighths, so fifty applications share scores (ties by id).
SKILLS = [f"skill-{n}" for n in range(8)]
STATUSES = ["submitted", "screening", "interview", "offer", "hired", "rejected", "withdrawn"]


@pytest.fixture(scope="module")
def applications_db() -> str:
    return unique_db("applications")


@pytest.fixture(scope="module")
async def applications(
    base_env: dict[str, str], applications_db: str
) -> AsyncIterator[httpx.AsyncClient]:
    # Dozens of applications from one test client: the write budget is not what this tests.
    env = {**base_env, "RATE_LIMIT_WRITES": "100000/minute"}
    settings = settings_for(ApplicationsSettings, env, mongodb_database=applications_db)
    async for client in client_for(create_app(settings)):
        yield client


@pytest.fixture(scope="module")
def board(
    applications: httpx.AsyncClient,
    servers: Servers,
    mongo: AsyncMongoClient[dict[str, Any]],
    applications_db: str,
) -> Board:
    return Board(servers, mongo, applications_db)


async def applied_with(
    client: httpx.AsyncClient, posting_id: str, skills: list[str]
) -> dict[str, Any]:
    response = await apply(client, posting_id, new_candidate(), skills=skills)
    assert response.status_code == 201, response.text
    application: dict[str, Any] = response.json()
    return application


# --- triage ----------------------------------------------------------------------------------


async def test_best_match_pages_have_no_gaps_or_repeats_while_applications_arrive(
    applications: httpx.AsyncClient, board: Board
) -> None:
    org = new_org()
    posting_id = await board.open(org, skills=SKILLS)
    chance = random.Random(23)

    def some_skills() -> list[str]:
        return chance.sample(SKILLS, chance.randint(0, len(SKILLS)))

    original = {
        application["application_id"]: application["match"]["score"]
        for application in [
            await applied_with(applications, posting_id, some_skills()) for _ in range(50)
        ]
    }
    assert len(set(original.values())) > 3  # scores vary, and many are shared

    seen: list[tuple[float, str]] = []
    params: dict[str, Any] = {"posting_id": posting_id, "sort": "-match", "limit": 6}
    while True:
        response = await applications.get("/applications", params=params, headers=as_employer(org))
        assert response.status_code == 200, response.text
        page = response.json()
        seen += [(item["match"]["score"], item["application_id"]) for item in page["items"]]
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]
        # New applications between pages: the best (sorting before the cursor), the worst
        # (after it), and any.
        for skills in (SKILLS, [], some_skills()):
            await applied_with(applications, posting_id, skills)

    ids = [application_id for _, application_id in seen]
    assert len(ids) == len(set(ids)), "an application was listed twice"
    assert set(original) <= set(ids), "an application that was there all along was skipped"
    assert seen == sorted(seen, reverse=True), "not best match first, ties by id"
    assert [i for i in ids if i in original] == sorted(
        original, key=lambda i: (original[i], i), reverse=True
    )


async def test_sort_is_checked(applications: httpx.AsyncClient, board: Board) -> None:
    org = new_org()
    posting_id = await board.open(org, skills=SKILLS)
    for _ in range(3):
        await applied_with(applications, posting_id, SKILLS[:2])
    headers = as_employer(org)

    async def answer(**params: Any) -> httpx.Response:
        return await applications.get("/applications", params=params, headers=headers)

    assert problem_fields(await answer(sort="match")) == {"sort"}
    assert problem_fields(await answer(sort="-match")) == {"sort"}  # needs posting_id
    newest = await answer(posting_id=posting_id, limit=1)
    assert newest.status_code == 200, newest.text
    newest_cursor = newest.json()["next_cursor"]
    # A cursor of one order is refused by the other.
    refused = await answer(posting_id=posting_id, sort="-match", cursor=newest_cursor)
    assert problem_fields(refused) == {"cursor"}
    explicit = await answer(posting_id=posting_id, sort="-submitted_at", limit=1)
    assert explicit.json()["items"] == newest.json()["items"]


# --- the pipeline ----------------------------------------------------------------------------


def expected_pipeline(records: list[Record], posting_id: str) -> dict[str, Any]:
    """The pipeline computed here from the events alone: each (application, version) once,
    the status of the newest version, and the seconds between versions n and n + 1."""
    steps: dict[str, dict[int, tuple[str, datetime]]] = {}
    for record in for_posting(records, posting_id):
        data = record.json()["data"]
        if record.topic == SUBMITTED:
            status, at = data["status"], data["submitted_at"]
        else:
            status, at = data["to_status"], data["changed_at"]
        when = datetime.fromisoformat(at.replace("Z", "+00:00"))
        steps.setdefault(data["application_id"], {})[data["version"]] = (status, when)
    counts = dict.fromkeys(STATUSES, 0)
    spent: dict[str, list[float]] = {status: [] for status in STATUSES}
    for versions in steps.values():
        counts[versions[max(versions)][0]] += 1
        for version, (status, at) in versions.items():
            if version + 1 in versions:
                spent[status].append((versions[version + 1][1] - at).total_seconds())

    def p90(values: list[float]) -> float | None:
        if len(values) < 2:
            return values[0] if values else None
        return statistics.quantiles(values, n=10, method="inclusive")[8]

    return {
        "posting_id": posting_id,
        "applications": len(steps),
        "statuses": [
            {
                "status": status,
                "count": counts[status],
                "left": len(spent[status]),
                "median_s": statistics.median(spent[status]) if spent[status] else None,
                "p90_s": p90(spent[status]),
            }
            for status in STATUSES
        ],
    }


def approximately(pipeline: dict[str, Any]) -> dict[str, Any]:
    """The pipeline with its seconds compared to the float's last bits."""
    return {
        **pipeline,
        "statuses": [
            {
                **figures,
                "median_s": pytest.approx(figures["median_s"]),
                "p90_s": pytest.approx(figures["p90_s"]),
            }
            for figures in pipeline["statuses"]
        ],
    }


async def events_of(servers: Servers, posting_id: str, steps: int) -> list[Record]:
    """The posting's events once `steps` distinct (application, version) pairs are read:
    counting records instead would stop early on redelivered duplicates."""

    def steps_in(records: list[Record]) -> int:
        return len(
            {
                (data["application_id"], data["version"])
                for data in (r.json()["data"] for r in for_posting(records, posting_id))
            }
        )

    records = await read_until(
        servers.kafka_bootstrap,
        [SUBMITTED, STATUS_CHANGED],
        lambda records: steps_in(records) >= steps,
        timeout_s=60,
    )
    assert steps_in(records) >= steps, "events missing from the topics"
    return records


async def pipeline_becomes(
    client: httpx.AsyncClient, posting_id: str, expected: dict[str, Any], headers: dict[str, str]
) -> dict[str, Any]:
    """The pipeline once it equals `expected` (the consumer follows the topics); else the last
    one seen, for the assertion to show."""
    last: dict[str, Any] = {}

    async def probe() -> dict[str, Any] | None:
        nonlocal last
        response = await client.get(f"/postings/{posting_id}/pipeline", headers=headers)
        assert response.status_code == 200, response.text
        last = response.json()
        return last if last == approximately(expected) else None

    try:
        return await eventually(probe, timeout_s=60, every_s=0.5)
    except TimeoutError:
        return last


# Each application's moves after submitting: a withdrawal is the candidate's, the rest the
# employer's.
MOVES = [
    [],
    [],
    ["screening"],
    ["screening"],
    ["screening", "interview"],
    ["screening", "interview", "offer"],
    ["screening", "interview", "offer", "hired"],
    ["rejected"],
    ["screening", "rejected"],
    ["screening", "interview", "rejected"],
    ["withdrawn"],
    ["screening", "withdrawn"],
]


async def test_the_pipeline_equals_what_the_events_say(
    applications: httpx.AsyncClient,
    board: Board,
    servers: Servers,
    base_env: dict[str, str],
    applications_db: str,
) -> None:
    org = new_org()
    posting_id = await board.open(org, skills=SKILLS)
    employer = as_employer(org)
    made: list[tuple[str, str]] = []  # (application_id, candidate)
    for _ in MOVES:
        candidate = new_candidate()
        response = await apply(applications, posting_id, candidate, skills=SKILLS[:3])
        assert response.status_code == 201, response.text
        made.append((response.json()["application_id"], candidate))
    # The moves interleaved across applications, round by round.
    for round_ in range(max(len(moves) for moves in MOVES)):
        for (application_id, candidate), moves in zip(made, MOVES, strict=True):
            if round_ < len(moves):
                status = moves[round_]
                party = as_candidate(candidate) if status == "withdrawn" else employer
                await moved(applications, application_id, status, party)
    events = len(MOVES) + sum(len(moves) for moves in MOVES)

    expected = expected_pipeline(await events_of(servers, posting_id, events), posting_id)
    assert expected["applications"] == len(MOVES)
    assert {f["status"]: f["count"] for f in expected["statuses"]} == {
        "submitted": 2,
        "screening": 2,
        "interview": 1,
        "offer": 1,
        "hired": 1,
        "rejected": 3,
        "withdrawn": 2,
    }
    assert await pipeline_becomes(applications, posting_id, expected, employer) == approximately(
        expected
    )
    assert await pipeline_becomes(applications, posting_id, expected, as_admin()) == (
        approximately(expected)
    )

    # Redelivered events (as after a consumer's crash before its commit) change nothing: the
    # duplicates go first on the application's partition, a new move after them shows when
    # they have been consumed.
    records = await events_of(servers, posting_id, events)
    first_id, _ = made[2]
    for record in keyed(records, first_id):
        await produce(servers.kafka_bootstrap, record.topic, record.value, key=record.key)
    await moved(applications, first_id, "interview", employer)
    expected = expected_pipeline(await events_of(servers, posting_id, events + 1), posting_id)
    assert {f["status"]: f["count"] for f in expected["statuses"]}["interview"] == 2
    assert await pipeline_becomes(applications, posting_id, expected, employer) == approximately(
        expected
    )

    # The replay rebuilds it from scratch, from the topics alone.
    output = rebuild_pipeline(servers, base_env, applications_db, "--from-scratch")
    assert "pipeline projection in database" in output
    response = await applications.get(f"/postings/{posting_id}/pipeline", headers=employer)
    assert response.json() == approximately(expected)


async def test_a_poison_record_is_dead_lettered_by_the_pipelines_group(
    applications: httpx.AsyncClient, board: Board, servers: Servers
) -> None:
    key = f"poison-{new_candidate()}".encode()
    await produce(servers.kafka_bootstrap, STATUS_CHANGED, b"{not an event", key=key)

    def dead_lettered(records: list[Record]) -> bool:
        return any(
            r.key == key and r.headers.get("dlq-consumer-group") == "applications.pipeline"
            for r in records
        )

    dead = await read_until(
        servers.kafka_bootstrap, [f"{STATUS_CHANGED}.dlq"], dead_lettered, timeout_s=60
    )
    assert dead_lettered(dead)


async def test_only_the_postings_employer_or_an_admin_see_its_pipeline(
    applications: httpx.AsyncClient, board: Board
) -> None:
    org = new_org()
    posting_id = await board.open(org, skills=SKILLS)

    async def status(headers: dict[str, str], posting: str = posting_id) -> int:
        response = await applications.get(f"/postings/{posting}/pipeline", headers=headers)
        return response.status_code

    assert await status(as_employer(org)) == 200
    assert await status(as_admin()) == 200
    assert await status(as_employer(new_org())) == 403
    assert await status(as_candidate(new_candidate())) == 403
    assert await status(as_admin(), "no-such-posting") == 404
    assert await status({}) == 401


def rebuild_pipeline(servers: Servers, base_env: dict[str, str], database: str, *flags: str) -> str:
    """The projection's rebuild command, run as an operator would; what it printed."""
    env = {
        **os.environ,
        **base_env,
        **servers.kafka_env("operator"),
        "MONGODB_DATABASE": database,
    }
    result = subprocess.run(
        [sys.executable, "-m", "hirestream.applications.rebuild_pipeline", *flags],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout

"""Posting expiry with two replicas of the postings service, each its own process running the
expiry job against the one database, as a Deployment with two replicas runs them.

Postings published through both end two seconds later; both replicas look twice a second. Each
posting closes itself once: one `posting.closed` with reason `expired` on the topic, counted
after a duplicate would have had the time to show, and it reads as closed from either replica.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from hirestream.shared.events.postings import POSTING_CLOSED
from tests.conftest import bearer, unique_db
from tests.support.kafka import Record, read_until
from tests.support.postings import (
    CLOSED,
    DUPLICATE_GRACE_S,
    create_id,
    new_org,
    ttl_days,
)
from tests.support.replicas import Replicas, replicas_of
from tests.support.servers import Servers

pytestmark = pytest.mark.e2e

POSTINGS = 8
SHORT_LIFE_S = 2.0


@pytest.fixture(scope="module")
def replicas(
    base_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Replicas]:
    env = {
        **base_env,
        "POSTING_DEFAULT_TTL_DAYS": str(ttl_days(SHORT_LIFE_S)),
        "EXPIRY_SWEEP_INTERVAL_S": "0.5",
    }
    with replicas_of(
        "postings",
        env,
        tmp_path_factory.mktemp("postings-replicas"),
        database=unique_db("postings"),
        count=2,
    ) as running:
        yield running


def closed_events(records: list[Record], posting_ids: list[str]) -> Counter[str]:
    wanted = {posting_id.encode() for posting_id in posting_ids}
    return Counter(record.key.decode() for record in records if record.key in wanted)


async def test_two_replicas_close_each_expired_posting_exactly_once(
    replicas: Replicas, servers: Servers
) -> None:
    org = new_org()
    posting_ids = []
    for index in range(POSTINGS):  # through each replica in turn, as a load balancer would
        replica = replicas.started[index % 2]
        async with httpx.AsyncClient(base_url=replica.url, timeout=10) as client:
            posting_ids.append(await create_id(client, org))

    await read_until(
        servers.kafka_bootstrap,
        [CLOSED],
        lambda records: len(closed_events(records, posting_ids)) == POSTINGS,
        timeout_s=60,
    )
    # Once each has one, long enough for a second (the other replica's, or the outbox sweep's
    # resend) to have shown up.
    records = await read_until(
        servers.kafka_bootstrap, [CLOSED], lambda _: False, timeout_s=DUPLICATE_GRACE_S
    )

    assert closed_events(records, posting_ids) == dict.fromkeys(posting_ids, 1)
    for record in records:
        if record.key is not None and record.key.decode() in posting_ids:
            event = POSTING_CLOSED.parse(record.value)
            assert (event.data.reason, event.data.version) == ("expired", 2)
            assert event.data.title == "Senior Backend Developer"
    for replica in replicas.started:
        assert replica.process is not None
        assert replica.process.poll() is None, replica.tail()  # both ran throughout
        async with httpx.AsyncClient(base_url=replica.url, timeout=10) as client:
            for posting_id in posting_ids:
                response = await client.get(f"/postings/{posting_id}", headers=bearer("candidate"))
                assert response.status_code == 200, response.text
                stored = response.json()
                assert (stored["status"], stored["close_reason"], stored["version"]) == (
                    "closed",
                    "expired",
                    2,
                )

"""Forged events on Kafka (finding 1 of the outside probe), against the three services as
processes on the authenticated broker.

A service's principal may write only its own topics: another service's credentials are refused
by the broker. The operator may write any topic, but consumers act only on events whose
CloudEvents `source` is a service that publishes the type: a forged one reaches the dead-letter
topic with the reason and changes nothing. The three forgeries the probe made, each checked
for its effect: an applicant nobody submitted (a stranger mailed, an employer's inbox), a
posting nobody published (applications accepted to it), a real posting closed by a made-up
version 99.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from hirestream.shared.events.applications import (
    APPLICATION_SUBMITTED,
    ApplicationStatus,
    ApplicationSubmitted,
    Candidate,
    Match,
)
from hirestream.shared.events.envelope import CONTENT_TYPE, serialize
from hirestream.shared.events.postings import (
    POSTING_CLOSED,
    POSTING_CREATED,
    CloseReason,
    PostingClosed,
    PostingCreated,
)
from hirestream.shared.events.types import utc_now
from tests.conftest import bearer, candidate_email
from tests.support.factories import new_posting_id, posting_body, snapshot_fields
from tests.support.kafka import Record, read_until
from tests.support.polling import eventually
from tests.support.servers import Servers
from tests.support.system import System, running_system

pytestmark = pytest.mark.e2e

RUN = uuid.uuid4().hex[:8]
ORG = f"org-forged-{RUN}"
FORGER = "hirestream/forger"
STRANGER = f"stranger.{RUN}@example.com"


@pytest.fixture(scope="module")
def system(base_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    with running_system(
        base_env, tmp_path_factory.mktemp("forged-logs"), database_suffix=f"forged{RUN}"
    ) as running:
        yield running


@pytest.fixture(scope="module")
def secured(servers: Servers) -> Servers:
    if not servers.kafka_passwords:
        pytest.fail("the test stack's Kafka must run with authentication (KAFKA_AUTH=scram)")
    return servers


async def produce_as(servers: Servers, principal: str, topic: str, value: bytes, key: str) -> None:
    producer = AIOKafkaProducer(**servers.kafka_client(principal), acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            topic, value, key=key.encode(), headers=[("content-type", CONTENT_TYPE.encode())]
        )
    finally:
        await producer.stop()


def forged_application(posting_id: str) -> tuple[str, bytes]:
    application_id = uuid.uuid4().hex[:24]
    data = ApplicationSubmitted(
        application_id=application_id,
        posting_id=posting_id,
        org=ORG,
        candidate=Candidate(candidate_id=f"cand-forged-{RUN}", name="Nobody", email=STRANGER),
        resume_url="https://cv.example.com/nobody.pdf",
        skills=["python"],
        match=Match(score=1.0, matched_skills=["python"], missing_skills=[]),
        status=ApplicationStatus.SUBMITTED,
        version=1,
        submitted_at=utc_now(),
    )
    return application_id, serialize(APPLICATION_SUBMITTED.new(data, source=FORGER))


def forged_posting(posting_id: str) -> bytes:
    data = PostingCreated.model_validate(snapshot_fields(posting_id, 1, org=ORG))
    return serialize(POSTING_CREATED.new(data, source=FORGER))


def forged_closing(posting_id: str) -> bytes:
    data = PostingClosed(
        posting_id=posting_id,
        org=ORG,
        reason=CloseReason.CANCELLED,
        version=99,
        closed_at=utc_now(),
    )
    return serialize(POSTING_CLOSED.new(data, source=FORGER))


async def apply(system: System, posting_id: str) -> httpx.Response:
    candidate = f"cand-{uuid.uuid4().hex[:8]}"
    body = {
        "name": "Real Candidate",
        "email": candidate_email(candidate),
        "resume_url": "https://cv.example.com/real.pdf",
        "consent": {"processing": True},
    }
    async with httpx.AsyncClient(base_url=system.url("applications"), timeout=10) as client:
        return await client.post(
            f"/postings/{posting_id}/applications",
            json=body,
            headers=bearer("candidate", sub=candidate),
        )


async def real_posting(system: System) -> str:
    """A posting the postings service published, known to applications."""
    async with httpx.AsyncClient(base_url=system.url("postings"), timeout=10) as client:
        created = await client.post(
            "/postings", json=posting_body(), headers=bearer("employer", sub=f"e-{RUN}", org=ORG)
        )
    assert created.status_code == 201, created.text
    posting_id: str = created.json()["posting_id"]

    async def known() -> httpx.Response | None:
        response = await apply(system, posting_id)
        return None if response.status_code == 404 else response

    assert (await eventually(known, timeout_s=60)).status_code == 201
    return posting_id


def dead_letter_of(records: list[Record], key: str) -> dict[str, str] | None:
    found = [record.headers for record in records if record.key == key.encode()]
    return found[0] if found else None


@pytest.mark.parametrize(
    ("principal", "topic"),
    [
        ("notifications", "application.submitted"),
        ("applications", "posting.created"),
        ("applications", "posting.closed"),
        ("postings", "application.submitted"),
    ],
)
async def test_a_service_principal_cannot_write_another_services_topic(
    secured: Servers, principal: str, topic: str
) -> None:
    posting_id = new_posting_id()
    with pytest.raises(KafkaError):
        await produce_as(secured, principal, topic, forged_posting(posting_id), posting_id)


async def test_forged_events_written_by_the_operator_are_dead_lettered_and_change_nothing(
    secured: Servers, system: System
) -> None:
    real = await real_posting(system)
    unknown = new_posting_id()
    application_id, application = forged_application(real)
    await produce_as(secured, "operator", "application.submitted", application, application_id)
    await produce_as(secured, "operator", "posting.created", forged_posting(unknown), unknown)
    await produce_as(secured, "operator", "posting.closed", forged_closing(real), real)

    dlq = ["application.submitted.dlq", "posting.created.dlq", "posting.closed.dlq"]
    expected = {application_id, unknown, real}

    def all_dead_lettered(records: list[Record]) -> bool:
        return expected <= {(record.key or b"").decode() for record in records}

    records = await read_until(secured.kafka_bootstrap, dlq, all_dead_lettered, timeout_s=90)
    for key in expected:
        headers = dead_letter_of(records, key)
        assert headers is not None, f"{key} was not dead-lettered"
        assert headers["dlq-error"].startswith(f"untrusted source '{FORGER}'")

    # No effect: the real posting still takes applications, the unknown one is unknown, the
    # employer's inbox has no forged applicant, and nobody mailed the stranger.
    assert (await apply(system, real)).status_code == 201
    assert (await apply(system, unknown)).status_code == 404
    async with httpx.AsyncClient(base_url=system.url("notifications"), timeout=10) as client:
        inbox: dict[str, Any] = (
            await client.get("/notifications", headers=bearer("employer", sub="e", org=ORG))
        ).json()
    assert application_id not in {item["subject"] for item in inbox["items"]}
    assert secured.mail_dir is not None
    assert not any(
        STRANGER in path.read_text(errors="replace") for path in secured.mail_dir.glob("*")
    )

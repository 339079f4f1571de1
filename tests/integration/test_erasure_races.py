"""A candidate's erasure and an `application.submitted` of theirs handled at the same moment, on
the real database: whichever way the two interleave, nothing of the person is left.

The notifications consumer checks the erasure register before it writes, and the erasure
handler anonymises before it records; so a batch that checked just before the record and
wrote just after the anonymisation would keep the person's data. Two things close that: the
consumer looks at the register again after writing, and the handler anonymises again after
recording (`hirestream.shared.privacy.erase_candidate`). Each test holds one side still at the
worst moment and lets the other run whole.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from hirestream.notifications import services
from hirestream.notifications.domain import Alert, AlertCriteria, ApplicationFacts
from hirestream.notifications.handlers import KEPT
from hirestream.notifications.services import NotificationsUnitOfWork
from hirestream.notifications.store import (
    ALERTS,
    NOTIFICATIONS,
    PREFERENCES,
    WEBHOOKS,
    AlertStore,
    FactStore,
    NotificationStore,
    PreferenceStore,
    WebhookStore,
)
from hirestream.shared.events.envelope import CloudEvent, source_of
from hirestream.shared.events.postings import PostingCreated
from hirestream.shared.events.privacy import (
    CANDIDATE_ERASURE_REQUESTED,
    CandidateErasureRequested,
)
from hirestream.shared.events.types import utc_now
from hirestream.shared.messaging.outbox import OutboxEntry, OutboxRelay
from hirestream.shared.privacy import ERASURES, Erasure, ErasureLedger, erase_candidate
from hirestream.shared.service_layer.unit_of_work import IdempotencyRecord, UnitOfWork
from tests.conftest import unique_db
from tests.support.notifications import (
    Case,
    application_submitted,
    new_case,
    new_id,
    posting_created,
)
from tests.support.notifications_fakes import (
    FakeDeliveries,
)

pytestmark = pytest.mark.integration

Database = AsyncDatabase[dict[str, Any]]


class FactsAfter(FactStore):
    """Runs `before_writing` between the consumer's look at the register and its writes."""

    before_writing: Callable[[], Awaitable[None]]

    async def remember_applications(self, facts: list[ApplicationFacts]) -> None:
        await self.before_writing()
        await super().remember_applications(facts)


class AlertsAfter(AlertStore):
    """Runs `after_matching` between the consumer's read of the matching alerts and its
    writes (the alerts hold the addresses the notifications are made for)."""

    after_matching: Callable[[], Awaitable[None]]

    async def matching(self, posting: PostingCreated) -> list[Alert]:
        matches = await super().matching(posting)
        await self.after_matching()
        return matches


class LedgerAfter(ErasureLedger):
    """Runs `before_recording` between the handler's first anonymisation and its record."""

    before_recording: Callable[[], Awaitable[None]]

    async def insert(
        self,
        erasure: Erasure,
        outbox: Sequence[OutboxEntry],
        idempotency: IdempotencyRecord | None,
    ) -> str:
        await self.before_recording()
        return await super().insert(erasure, outbox, idempotency)


async def _nowhere(*_: Any) -> None:
    return None


@pytest.fixture
async def db(mongo: AsyncMongoClient[dict[str, Any]]) -> AsyncIterator[Database]:
    database = mongo[unique_db("notifications")]
    yield database
    await mongo.drop_database(database.name)


@pytest.fixture
async def relay(db: Database) -> AsyncIterator[OutboxRelay]:
    relay = OutboxRelay(db[ERASURES], publish=_nowhere)
    yield relay
    await relay.stop(timeout_s=5)


def notifications_on(
    db: Database, facts: FactStore, ledger: ErasureLedger, alerts: AlertStore | None = None
) -> NotificationsUnitOfWork:
    return NotificationsUnitOfWork(
        notifications=NotificationStore(db[NOTIFICATIONS]),
        preferences=PreferenceStore(db[PREFERENCES]),
        alerts=alerts or AlertStore(db[ALERTS]),
        webhooks=WebhookStore(db[WEBHOOKS]),
        facts=facts,
        erasures=ledger,
        publish=_nowhere,
        deliveries=FakeDeliveries(),  # deliveries are not what is tested here
        source="tests",
    )


def eraser(
    ledger: ErasureLedger, relay: OutboxRelay, uow: NotificationsUnitOfWork
) -> Callable[[CloudEvent[CandidateErasureRequested]], Awaitable[bool]]:
    """The erasure handler of the notifications service, on this ledger."""

    async def anonymise(candidate_id: str) -> dict[str, int]:
        return await services.anonymise_candidate(candidate_id, uow)

    async def erase(event: CloudEvent[CandidateErasureRequested]) -> bool:
        erasures = UnitOfWork[Erasure](ledger, relay, source="tests")
        return await erase_candidate(
            event.data, erasures, service="notifications", anonymise=anonymise, kept=KEPT
        )

    return erase


def erasure_requested(case: Case) -> CloudEvent[CandidateErasureRequested]:
    request = CandidateErasureRequested(
        candidate_id=case.candidate_id,
        request_id=uuid.uuid4().hex,
        requested_by=case.candidate_id,
        requested_at=utc_now(),
    )
    return CANDIDATE_ERASURE_REQUESTED.new(request, source=source_of("applications"))


async def where_the_person_is(db: Database, case: Case) -> list[str]:
    """The collections that still hold the candidate's name or address somewhere."""
    found = []
    for name in await db.list_collection_names():
        async for document in db[name].find():
            text = json.dumps(document, default=str)
            if case.name in text or case.email in text:
                found.append(name)
    return sorted(set(found))


async def test_an_erasure_recorded_while_a_batch_writes_leaves_nothing_of_the_person(
    db: Database, relay: OutboxRelay
) -> None:
    case = new_case(name=f"Grace Hopper {uuid.uuid4().hex[:6]}")
    facts = FactsAfter(db)
    ledger = ErasureLedger(db[ERASURES])
    uow = notifications_on(db, facts, ledger)
    erase = eraser(ledger, relay, uow)

    async def whole_erasure() -> None:  # after the consumer found no erasure in the register
        await erase(erasure_requested(case))

    facts.before_writing = whole_erasure
    await services.notify_applications_submitted([application_submitted(case)], uow)

    assert await db[NOTIFICATIONS].count_documents({"source_event_id": {"$exists": True}}) == 3
    assert await where_the_person_is(db, case) == []


async def test_a_batch_written_between_an_erasures_two_steps_leaves_nothing_of_the_person(
    db: Database, relay: OutboxRelay
) -> None:
    case = new_case(name=f"Katherine Johnson {uuid.uuid4().hex[:6]}")
    ledger = LedgerAfter(db[ERASURES])
    uow = notifications_on(db, FactStore(db), ledger)
    erase = eraser(ledger, relay, uow)

    async def whole_batch() -> None:  # after the first anonymisation, before the record
        await services.notify_applications_submitted([application_submitted(case)], uow)
        assert await where_the_person_is(db, case) != []  # written, and nothing erased it yet

    ledger.before_recording = whole_batch
    await erase(erasure_requested(case))

    assert await where_the_person_is(db, case) == []


async def test_an_erasure_between_matching_an_alert_and_notifying_leaves_nothing_of_the_person(
    db: Database, relay: OutboxRelay
) -> None:
    case = new_case(name=f"Mary Jackson {uuid.uuid4().hex[:6]}")
    alerts = AlertsAfter(db[ALERTS])
    await alerts.create(case.candidate_id, AlertCriteria(city="Porto", email=case.email))
    ledger = ErasureLedger(db[ERASURES])
    uow = notifications_on(db, FactStore(db), ledger, alerts)
    erase = eraser(ledger, relay, uow)

    async def whole_erasure() -> None:  # the alert was read; its notifications not yet made
        await erase(erasure_requested(case))

    alerts.after_matching = whole_erasure
    posting = posting_created(new_id(), case.org, location={"city": "Porto", "country": "PT"})
    await services.notify_posting_created(posting, uow)

    assert await db[NOTIFICATIONS].count_documents({"recipient": f"user:{case.candidate_id}"}) == 2
    assert await where_the_person_is(db, case) == []

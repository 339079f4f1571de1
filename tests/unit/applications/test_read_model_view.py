"""What the applications read model stores from each posting event (`record_posting`), and
how long the applications route reuses a posting it read."""

import asyncio
from collections.abc import Callable

import pytest

from hirestream.applications.domain import PostingView
from hirestream.applications.services import (
    ApplicationsUnitOfWork,
    record_posting,
    submit_application,
)
from hirestream.applications.store import PostingReadModel
from hirestream.shared.events.postings import CloseReason, PostingClosed, PostingStatus
from hirestream.shared.service_layer.errors import Conflict
from tests.support.applications import (
    NOW,
    POSTING_ID,
    FakePostingViews,
    OnePostingCollection,
    closed_posting,
    open_posting,
    open_posting_document,
    submission,
)


def test_a_closing_does_not_erase_fields_it_does_not_carry() -> None:
    closed = PostingClosed(
        posting_id="p1", org="acme", reason=CloseReason.FILLED, version=3, closed_at=NOW
    )
    fields = PostingView.from_closed(closed).fields_to_store()
    assert fields["status"] is PostingStatus.CLOSED
    assert fields["version"] == 3
    assert "title" not in fields
    assert "skills" not in fields


async def test_a_posting_event_is_recorded_only_over_an_older_version() -> None:
    postings = FakePostingViews()

    assert await record_posting(open_posting(version=2, title="Lead Engineer"), postings)
    assert not await record_posting(open_posting(version=2, title="Duplicate"), postings)
    assert not await record_posting(open_posting(version=1, title="Older"), postings)

    view = await postings.get(POSTING_ID)
    assert view is not None
    assert (view.version, view.title) == (2, "Lead Engineer")


async def test_a_recorded_closing_keeps_the_title_and_refuses_applications(
    postings: FakePostingViews, unit_of_work: Callable[[], ApplicationsUnitOfWork]
) -> None:
    assert await record_posting(closed_posting(version=2), postings)

    view = await postings.get(POSTING_ID)
    assert view is not None
    assert (view.status, view.title) == (PostingStatus.CLOSED, "Senior Backend Developer")
    with pytest.raises(Conflict):
        await submit_application(submission(), unit_of_work())


async def test_postings_read_for_applications_are_reused_until_a_new_version_is_stored() -> None:
    collection = OnePostingCollection(open_posting_document(version=1))
    read_model = PostingReadModel(collection)  # type: ignore[arg-type]
    assert (await read_model.get("p1")) == (await read_model.get("p1"))
    assert collection.reads == 1  # the second came from memory
    assert await read_model.get("unknown") is None
    assert await read_model.get("unknown") is None
    assert collection.reads == 3  # unknown postings are not kept

    closed = PostingClosed(
        posting_id="p1", org="acme", reason=CloseReason.FILLED, version=2, closed_at=NOW
    )
    await read_model.apply(PostingView.from_closed(closed))
    view = await read_model.get("p1")
    assert view is not None
    assert view.status is PostingStatus.CLOSED  # this process's copy was replaced at once


async def test_a_read_that_overlaps_a_stored_version_is_not_kept() -> None:
    collection = OnePostingCollection(open_posting_document(version=1))
    read_model = PostingReadModel(collection)  # type: ignore[arg-type]
    collection.read_gate = asyncio.Event()
    slow_read = asyncio.create_task(read_model.get("p1"))  # reads version 1, then waits
    await asyncio.sleep(0)
    closed = PostingClosed(
        posting_id="p1", org="acme", reason=CloseReason.FILLED, version=2, closed_at=NOW
    )
    await read_model.apply(PostingView.from_closed(closed))
    collection.read_gate.set()
    stale = await slow_read
    assert stale is not None
    assert stale.status is PostingStatus.OPEN  # what it read, before the new version
    collection.read_gate = None
    fresh = await read_model.get("p1")
    assert fresh is not None
    assert fresh.status is PostingStatus.CLOSED  # the overlapping read was not kept

"""The postings use cases' ports, in memory: a fresh set for every test."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from hirestream.postings.services import PostingsUnitOfWork
from tests.support.fakes import RecordingRelay
from tests.support.postings import FakePostings, open_posting, postings_unit_of_work


@pytest.fixture
def postings() -> FakePostings:
    """The store, holding one open posting (`POSTING_ID` of `ORG`, version 1)."""
    return FakePostings(open_posting())


@pytest.fixture
def relay() -> RecordingRelay:
    return RecordingRelay()


@pytest.fixture
def unit_of_work(postings: FakePostings, relay: RecordingRelay) -> Callable[[], PostingsUnitOfWork]:
    """A new unit of work per use case, as the routes get one per request."""
    return lambda: postings_unit_of_work(postings, relay)

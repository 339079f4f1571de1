"""The applications use cases' ports, in memory: a fresh set for every test."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from hirestream.applications.services import ApplicationsUnitOfWork, ErasureUnitOfWork
from tests.support.applications import (
    FakeApplications,
    FakeErasureRequests,
    FakePostingViews,
    applications_unit_of_work,
    erasure_unit_of_work,
    open_posting,
)
from tests.support.fakes import RecordingRelay


@pytest.fixture
def applications() -> FakeApplications:
    return FakeApplications()


@pytest.fixture
def postings() -> FakePostingViews:
    """The read model, knowing one open posting (`POSTING_ID` of `ORG`)."""
    return FakePostingViews(open_posting())


@pytest.fixture
def relay() -> RecordingRelay:
    return RecordingRelay()


@pytest.fixture
def unit_of_work(
    applications: FakeApplications, postings: FakePostingViews, relay: RecordingRelay
) -> Callable[[], ApplicationsUnitOfWork]:
    """A new unit of work per use case, as the routes get one per request."""
    return lambda: applications_unit_of_work(applications, postings, relay)


@pytest.fixture
def requests() -> FakeErasureRequests:
    return FakeErasureRequests()


@pytest.fixture
def erasures(
    requests: FakeErasureRequests, relay: RecordingRelay
) -> Callable[[], ErasureUnitOfWork]:
    return lambda: erasure_unit_of_work(requests, relay)

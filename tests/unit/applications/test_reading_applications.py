"""Reading one application and listing them (`get_application`, `list_applications`): each
party sees its own, and someone else's application does not exist for them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from hirestream.applications.domain import Application
from hirestream.applications.services import (
    ApplicationsUnitOfWork,
    get_application,
    list_applications,
)
from hirestream.shared.events.applications import ApplicationStatus
from hirestream.shared.identity import Principal
from hirestream.shared.service_layer.errors import NotFound
from tests.support.applications import (
    ADMIN,
    APPLICATION_ID,
    CANDIDATE,
    EMPLOYER,
    NOW,
    OTHER_CANDIDATE,
    OTHER_EMPLOYER,
    FakeApplications,
    application_in,
)

S = ApplicationStatus
Uow = Callable[[], ApplicationsUnitOfWork]
ACME_BACKEND = "6650f1c2e4b0a1b2c3d4e5f6"
ACME_FRONTEND = "6650f1c2e4b0a1b2c3d4e5f7"
GLOBEX_POSTING = "6650f1c2e4b0a1b2c3d4e5f8"


@pytest.fixture
def stored(applications: FakeApplications) -> dict[str, Application]:
    """Four applications, one hour apart, named by who made them to which posting."""
    cases = {
        "mine-at-acme": (CANDIDATE, ACME_BACKEND, "acme", S.SUBMITTED),
        "mine-at-globex": (CANDIDATE, GLOBEX_POSTING, "globex", S.SUBMITTED),
        "theirs-at-acme": (OTHER_CANDIDATE, ACME_BACKEND, "acme", S.SCREENING),
        "theirs-at-acme-frontend": (OTHER_CANDIDATE, ACME_FRONTEND, "acme", S.SUBMITTED),
    }
    made: dict[str, Application] = {}
    for hours, (name, (candidate, posting_id, org, status)) in enumerate(cases.items()):
        made[name] = application_in(
            status,
            application_id=f"6650f1c2e4b0a1b2c3d4e60{hours}",
            candidate_id=candidate.user_id,
            posting_id=posting_id,
            org=org,
            submitted_at=NOW + timedelta(hours=hours),
        )
        applications.put(made[name])
    return made


async def visible_ids(
    unit_of_work: Uow,
    caller: Principal,
    *,
    posting_id: str | None = None,
    status: ApplicationStatus | None = None,
) -> list[str]:
    page = await list_applications(
        caller, unit_of_work(), posting_id=posting_id, status=status, limit=20, cursor=None
    )
    return [application.application_id for application in page.items]


def ids(stored: dict[str, Application], *names: str) -> list[str]:
    return [stored[name].application_id for name in names]


# --- one ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "caller",
    [
        pytest.param(CANDIDATE, id="the-candidate"),
        pytest.param(EMPLOYER, id="the-postings-employer"),
        pytest.param(ADMIN, id="admin"),
    ],
)
async def test_an_application_is_visible_to_its_parties(
    unit_of_work: Uow, applications: FakeApplications, caller: Principal
) -> None:
    applications.put(application_in(S.INTERVIEW))

    application = await get_application(APPLICATION_ID, caller, unit_of_work())

    assert application == await applications.get(APPLICATION_ID)


@pytest.mark.parametrize(
    "caller",
    [
        pytest.param(OTHER_CANDIDATE, id="another-candidate"),
        pytest.param(OTHER_EMPLOYER, id="an-employer-of-another-org"),
    ],
)
async def test_an_application_does_not_exist_for_anyone_else(
    unit_of_work: Uow, applications: FakeApplications, caller: Principal
) -> None:
    applications.put(application_in(S.INTERVIEW))

    with pytest.raises(NotFound) as refused:
        await get_application(APPLICATION_ID, caller, unit_of_work())

    assert refused.value.detail == f"application {APPLICATION_ID} does not exist"


async def test_an_unknown_application_is_not_found(unit_of_work: Uow) -> None:
    with pytest.raises(NotFound):
        await get_application(APPLICATION_ID, ADMIN, unit_of_work())


# --- lists -------------------------------------------------------------------------------


async def test_a_candidate_lists_only_their_own_newest_first(
    unit_of_work: Uow, stored: dict[str, Application]
) -> None:
    assert await visible_ids(unit_of_work, CANDIDATE) == ids(
        stored, "mine-at-globex", "mine-at-acme"
    )


async def test_an_employer_lists_only_their_orgs(
    unit_of_work: Uow, stored: dict[str, Application]
) -> None:
    assert await visible_ids(unit_of_work, EMPLOYER) == ids(
        stored, "theirs-at-acme-frontend", "theirs-at-acme", "mine-at-acme"
    )
    assert await visible_ids(unit_of_work, OTHER_EMPLOYER) == ids(stored, "mine-at-globex")


async def test_an_admin_lists_every_orgs(unit_of_work: Uow, stored: dict[str, Application]) -> None:
    assert await visible_ids(unit_of_work, ADMIN) == ids(
        stored, "theirs-at-acme-frontend", "theirs-at-acme", "mine-at-globex", "mine-at-acme"
    )


async def test_filters_narrow_what_the_caller_may_see(
    unit_of_work: Uow, stored: dict[str, Application]
) -> None:
    assert await visible_ids(unit_of_work, EMPLOYER, posting_id=ACME_BACKEND) == ids(
        stored, "theirs-at-acme", "mine-at-acme"
    )
    assert await visible_ids(unit_of_work, EMPLOYER, status=S.SCREENING) == ids(
        stored, "theirs-at-acme"
    )
    assert await visible_ids(unit_of_work, EMPLOYER, status=S.HIRED) == []
    assert await visible_ids(unit_of_work, CANDIDATE, posting_id=GLOBEX_POSTING) == ids(
        stored, "mine-at-globex"
    )


async def test_filtering_on_another_orgs_posting_shows_nothing(
    unit_of_work: Uow, stored: dict[str, Application]
) -> None:
    assert await visible_ids(unit_of_work, EMPLOYER, posting_id=GLOBEX_POSTING) == []
    assert await visible_ids(unit_of_work, OTHER_CANDIDATE, posting_id=GLOBEX_POSTING) == []


async def test_limit_and_cursor_page_through_every_application_once(
    unit_of_work: Uow, stored: dict[str, Application]
) -> None:
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        page = await list_applications(
            ADMIN, unit_of_work(), posting_id=None, status=None, limit=3, cursor=cursor
        )
        pages.append([application.application_id for application in page.items])
        if (cursor := page.next_cursor) is None:
            break

    assert [len(page) for page in pages] == [3, 1]
    assert [i for page in pages for i in page] == await visible_ids(unit_of_work, ADMIN)

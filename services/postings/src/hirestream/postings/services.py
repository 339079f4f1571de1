"""The postings use cases: publish, change, close, read and search, and expiry.

Each takes a command (what the caller asks, already authenticated) and the unit of work, runs
the domain's rules, and commits the posting with the events it records. They raise the service
layer's errors (NotFound, Forbidden, Conflict, ...), which entrypoints translate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from hirestream.postings.domain import (
    DEFAULT_EXPIRY,
    ExpiryOutOfBounds,
    ExpiryPolicy,
    Posting,
    PostingChanges,
    PostingDraft,
    PostingIsClosed,
    PostingSearch,
)
from hirestream.shared.events.postings import CloseReason
from hirestream.shared.events.types import utc_now
from hirestream.shared.service_layer.errors import (
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    PreconditionFailed,
    PreconditionRequired,
    UseCaseError,
)
from hirestream.shared.service_layer.idempotency import IdempotentRequest, new_id
from hirestream.shared.service_layer.unit_of_work import (
    AggregateStore,
    AlreadyStored,
    Relay,
    StaleVersion,
    StoredRequest,
    UnitOfWork,
)
from hirestream.shared.storage.pagination import Page

# How often a close is tried again when a concurrent change moved the version under it.
CLOSE_ATTEMPTS = 3
# How many expired postings one query of the expiry job reads.
EXPIRY_BATCH = 200


class PostingRepository(AggregateStore[Posting], Protocol):
    async def get(self, posting_id: str) -> Posting | None: ...

    async def stored_request(self, posting_id: str) -> StoredRequest | None: ...

    async def search(
        self, search: PostingSearch, *, limit: int, cursor: str | None
    ) -> Page[Posting]: ...

    async def expired(self, now: datetime, *, limit: int) -> list[Posting]:
        """Open postings whose end is at or before `now`, earliest end first."""
        ...


class PostingsUnitOfWork(UnitOfWork[Posting]):
    def __init__(self, postings: PostingRepository, relay: Relay, *, source: str) -> None:
        super().__init__(postings, relay, source=source)
        self.postings = postings


UnitOfWorkFactory = Callable[[], PostingsUnitOfWork]


@dataclass(frozen=True)
class IfMatch:
    """The versions a change was made from (`If-Match`); `any_version` for `*`."""

    versions: frozenset[int]
    any_version: bool = False

    def allows(self, version: int) -> bool:
        return self.any_version or version in self.versions


@dataclass(frozen=True)
class PublishPosting:
    draft: PostingDraft
    org: str
    idempotency: IdempotentRequest | None = None


@dataclass(frozen=True)
class Published:
    posting: Posting
    replayed: bool = False  # a retry of a request with the same Idempotency-Key


@dataclass(frozen=True)
class ChangePosting:
    posting_id: str
    changes: PostingChanges
    org: str | None
    if_match: IfMatch | None


@dataclass(frozen=True)
class ClosePosting:
    posting_id: str
    reason: CloseReason
    org: str | None
    is_admin: bool = False


class NoLongerAdvertised(UseCaseError):
    """The posting exists but is no longer advertised: closed, or past its end."""


def _invalid_expiry(error: ExpiryOutOfBounds) -> InvalidRequest:
    return InvalidRequest(str(error), field="expires_at")


async def publish_posting(
    command: PublishPosting, uow: PostingsUnitOfWork, *, expiry: ExpiryPolicy = DEFAULT_EXPIRY
) -> Published:
    try:
        posting, created = Posting.publish(
            command.draft,
            posting_id=new_id(command.idempotency),
            org=command.org,
            now=utc_now(),
            expiry=expiry,
        )
    except ExpiryOutOfBounds as error:
        raise _invalid_expiry(error) from error
    request = command.idempotency
    uow.add(posting, created, idempotency=request.record(posting.json_bytes()) if request else None)
    try:
        await uow.commit()
    except AlreadyStored:
        if request is None:  # a fresh id cannot be taken
            raise
        stored = await uow.postings.stored_request(posting.posting_id)
        first = request.first_response(stored.record if stored else None)
        return Published(Posting.model_validate_json(first), replayed=True)
    return Published(posting)


async def get_posting(posting_id: str, uow: PostingsUnitOfWork) -> Posting:
    posting = await uow.postings.get(posting_id)
    if posting is None:
        raise NotFound(f"posting {posting_id} does not exist")
    return posting


async def advertised_posting(posting_id: str, uow: PostingsUnitOfWork) -> Posting:
    """A posting as job boards may show it: open and not past its end. NoLongerAdvertised
    otherwise (a closed posting never reopens; one past its end is about to close)."""
    posting = await get_posting(posting_id, uow)
    if not posting.is_advertised(utc_now()):
        raise NoLongerAdvertised(f"posting {posting_id} is closed or past its end")
    return posting


async def search_postings(
    search: PostingSearch, uow: PostingsUnitOfWork, *, limit: int, cursor: str | None
) -> Page[Posting]:
    return await uow.postings.search(search, limit=limit, cursor=cursor)


async def change_posting(
    command: ChangePosting, uow: PostingsUnitOfWork, *, expiry: ExpiryPolicy = DEFAULT_EXPIRY
) -> Posting:
    posting = await get_posting(command.posting_id, uow)
    if not posting.owned_by(command.org):
        raise Forbidden("only the employer that owns this posting may change it")
    if command.if_match is None:
        raise PreconditionRequired("send If-Match with the ETag of the version you changed")
    if not command.if_match.allows(posting.version):
        raise PreconditionFailed(f"the posting is at version {posting.version} now")
    try:
        changed, updated = posting.change(command.changes, now=utc_now(), expiry=expiry)
    except PostingIsClosed as error:
        raise Conflict("a closed posting cannot be changed") from error
    except ExpiryOutOfBounds as error:
        raise _invalid_expiry(error) from error
    if updated is None:  # nothing differs: no new version
        return posting
    uow.update(changed, updated, expected_version=posting.version)
    try:
        await uow.commit()
    except StaleVersion as error:
        raise PreconditionFailed("the posting changed meanwhile; fetch it and try again") from error
    return changed


async def close_posting(command: ClosePosting, uow: PostingsUnitOfWork) -> Posting:
    for _ in range(CLOSE_ATTEMPTS):
        posting = await get_posting(command.posting_id, uow)
        if not (command.is_admin or posting.owned_by(command.org)):
            raise Forbidden("only the employer that owns this posting may close it")
        try:
            closed, event = posting.close(command.reason, now=utc_now())
        except PostingIsClosed as error:
            raise Conflict("the posting is already closed") from error
        uow.update(closed, event, expected_version=posting.version)
        try:
            await uow.commit()
        except StaleVersion:
            continue  # changed meanwhile: decide again on what is stored now
        return closed
    raise Conflict("the posting keeps changing; try again", retry_after_s=1)


async def expire_posting(posting_id: str, uow: PostingsUnitOfWork, *, now: datetime) -> bool:
    """Close the posting with reason `expired` if it is open and past its end at `now`; whether
    this call closed it. The write is conditional on the version read, so of two replicas
    racing (or an employer extending it meanwhile) only one write lands, and the other decides
    again on what is stored now: the posting is closed, and `posting.closed` recorded, once."""
    for _ in range(CLOSE_ATTEMPTS):
        posting = await uow.postings.get(posting_id)
        expired = posting.expire(now=now) if posting is not None else None
        if posting is None or expired is None:
            return False
        closed, event = expired
        uow.update(closed, event, expected_version=posting.version)
        try:
            await uow.commit()
        except StaleVersion:
            continue
        return True
    return False  # keeps changing: the next run decides again


async def expire_postings(unit_of_work: UnitOfWorkFactory, *, now: datetime) -> int:
    """Close every posting past its end at `now`, each in a write of its own with its event;
    how many this call closed. A run cut short (a crash, the database away) leaves the rest
    open and past their end, where the next run, on any replica, finds them."""
    closed = 0
    while True:
        due = await unit_of_work().postings.expired(now, limit=EXPIRY_BATCH)
        closed_now = 0
        for posting in due:
            if await expire_posting(posting.posting_id, unit_of_work(), now=now):
                closed_now += 1
        closed += closed_now
        # A full batch may have more behind it. One where this run closed none (another replica
        # is on them, or they keep changing) is left to the next run, so the loop cannot spin.
        if len(due) < EXPIRY_BATCH or closed_now == 0:
            return closed

"""Group commit: concurrent writes leave together, and each caller gets its own outcome."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from hirestream.shared.storage.group_commit import GroupCommit


class Recorder:
    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.release = asyncio.Event()

    async def run(self, items: Sequence[int]) -> list[str | BaseException]:
        self.batches.append(list(items))
        await self.release.wait()
        return [ValueError(f"odd {i}") if i % 2 else f"ok {i}" for i in items]


async def test_writes_arriving_while_a_command_is_out_leave_together_in_the_next() -> None:
    recorder = Recorder()
    commit: GroupCommit[int, str] = GroupCommit(recorder.run)
    first = asyncio.create_task(commit.submit(0))
    await asyncio.sleep(0.01)  # the first leaves alone: no timer holds it back
    assert recorder.batches == [[0]]
    later = [asyncio.create_task(commit.submit(i)) for i in (2, 4, 6)]
    await asyncio.sleep(0.01)
    assert recorder.batches == [[0]]  # queued behind the command in flight
    recorder.release.set()
    assert await first == "ok 0"
    assert await asyncio.gather(*later) == ["ok 2", "ok 4", "ok 6"]
    assert recorder.batches == [[0], [2, 4, 6]]


async def test_each_caller_gets_its_own_error_and_a_failed_command_reaches_all() -> None:
    recorder = Recorder()
    recorder.release.set()
    commit: GroupCommit[int, str] = GroupCommit(recorder.run)
    outcomes = await asyncio.gather(commit.submit(2), commit.submit(3), return_exceptions=True)
    assert outcomes[0] == "ok 2"
    assert isinstance(outcomes[1], ValueError)

    async def database_away(items: Sequence[int]) -> list[str | BaseException]:
        raise ConnectionError("no server")

    failing: GroupCommit[int, str] = GroupCommit(database_away)
    results = await asyncio.gather(failing.submit(1), failing.submit(2), return_exceptions=True)
    assert all(isinstance(result, ConnectionError) for result in results)


async def test_batches_are_capped() -> None:
    recorder = Recorder()
    recorder.release.set()
    commit: GroupCommit[int, str] = GroupCommit(recorder.run, max_batch=2)
    await asyncio.gather(*(commit.submit(i) for i in (0, 2, 4, 6, 8)))
    assert [len(batch) for batch in recorder.batches] == [2, 2, 1]


async def test_a_cancelled_flush_cancels_its_callers_instead_of_leaving_them_waiting() -> None:
    recorder = Recorder()
    commit: GroupCommit[int, str] = GroupCommit(recorder.run)
    waiting = asyncio.create_task(commit.submit(0))
    await asyncio.sleep(0.01)
    assert commit._flusher is not None
    commit._flusher.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting

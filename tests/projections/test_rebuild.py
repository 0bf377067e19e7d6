"""Rebuild: from the archive plus the live stream into new tables, then one switch; equal row for row."""

from __future__ import annotations

import asyncio

import pytest

from events import EventLog
from projections.api import ReadModel
from projections.memory import InMemoryReadModel
from projections.rebuild import RebuildProgress, rebuild
from tests.events.factories import added, call, cleared, created, deleted, mem_deleted, msg, saved

from .helpers import dump, project

T = "default"


async def workload(log: EventLog, rounds: int = 3, tenant_prefix: str = "") -> None:
    """A bit of everything the log accepts, over several sessions, users and partitions."""
    for r in range(rounds):
        for i in range(4):
            sid, user = f"{tenant_prefix}s{r}-{i}", f"u{i % 2}"
            await log.append([created(sid, user, round=r)])
            await log.append(
                [
                    added(
                        sid,
                        msg("user", f"hello {r}-{i}"),
                        msg("assistant", None, tool_calls=[call(f"c{r}{i}")]),
                    )
                ]
            )
            await log.append([added(sid, msg("tool", "result", tool_call_id=f"c{r}{i}"))])
            await log.append([saved(user, f"k{i}", {"r": r, "i": i})])
            await log.append([saved(user, "notes", [r, i], session=sid)])
            if i == 1:
                await log.append([mem_deleted(user, f"k{i}")])
            if i == 2:
                await log.append([cleared(user, session=sid)])
            if i == 3:
                await log.append([deleted(sid)])
        await log.append([cleared("u1")])


async def test_rebuild_equals_incremental(log: EventLog, read_model: ReadModel) -> None:
    await workload(log)
    await project(log, read_model, batch=7)
    before = await dump(read_model)
    reports: list[RebuildProgress] = []
    result = await rebuild(read_model, log, progress=reports.append, batch=5)
    assert await dump(read_model) == before
    assert result.events == len(before["archive"]) and result.dead_lettered == 0
    assert reports[-1].phase == "done" and reports[-1].done == reports[-1].total == result.events
    assert all(r.done <= r.total for r in reports)
    assert {r.phase for r in reports} >= {"archive", "switch", "done"}
    # And it equals a model built in one go from the log.
    fresh = InMemoryReadModel()
    await project(log, fresh)
    assert await dump(fresh) == before


async def test_rebuild_reads_the_log_tail_and_serves_meanwhile(log: EventLog, read_model: ReadModel) -> None:
    await workload(log, rounds=2)
    await project(log, read_model, epoch=3)
    await workload(log, rounds=1, tenant_prefix="late-")  # in the log, not yet projected
    seen: list[str] = []

    async def meanwhile(p: RebuildProgress) -> None:
        s = await read_model.get_session(T, "s0-0")  # the old tables keep serving
        assert s is not None and s.message_count == 3
        seen.append(p.phase)

    tasks: list[asyncio.Task[None]] = []
    result = await rebuild(
        read_model, log, progress=lambda p: tasks.append(asyncio.ensure_future(meanwhile(p))), batch=10
    )
    await asyncio.gather(*tasks)
    assert "log" in seen
    # The new tables hold the tail as well; the checkpoints say so, and keep the projector's epoch.
    cps = await read_model.checkpoints()
    assert {p: cp.position for p, cp in cps.items()} == {p: pos for p, pos in result.positions.items() if pos}
    assert {cp.epoch for cp in cps.values()} == {3}
    assert await read_model.get_session(T, "late-s0-0") is not None
    await project(log, read_model, epoch=3)  # the projector goes on from the new checkpoints
    fresh = InMemoryReadModel()
    await project(log, fresh)
    assert await dump(read_model) == await dump(fresh)


async def test_rebuild_from_the_archive_after_a_trim(log: EventLog, read_model: ReadModel) -> None:
    await workload(log, rounds=2)
    await project(log, read_model)
    before = await dump(read_model)
    for p in range(log.partitions):
        await log.redis.xtrim(log.keys.log(p), maxlen=0, approximate=False)
    await rebuild(read_model, log, batch=4)
    assert await dump(read_model) == before


async def test_rebuild_is_cancellable_and_resumable(log: EventLog, read_model: ReadModel) -> None:
    await workload(log, rounds=3)
    await project(log, read_model)
    before = await dump(read_model)
    total = len(before["archive"])
    task: asyncio.Task[object] | None = None

    def cancel_midway(p: RebuildProgress) -> None:
        if p.done >= total // 2 and task is not None:
            task.cancel()

    task = asyncio.ensure_future(rebuild(read_model, log, progress=cancel_midway, batch=3))
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await dump(read_model) == before  # nothing switched: the old tables serve as they were
    reports: list[RebuildProgress] = []
    result = await rebuild(read_model, log, progress=reports.append, batch=3)
    assert 0 < result.events < total  # it resumed
    assert reports[0].done >= total // 2
    assert await dump(read_model) == before
    # Starting over is possible too.
    result = await rebuild(read_model, log, batch=50, resume=False)
    assert result.events == total
    assert await dump(read_model) == before


async def test_rebuild_dead_letters_poison_again(log: EventLog, read_model: ReadModel) -> None:
    await log.append([created("s1", "u1")])
    p = (await log.aggregate(T, "session", "s1")).partition
    await log.redis.xadd(log.keys.log(p), {"type": "session.renamed.v1", "version": "2", "event": b"{}"})
    await log.append([added("s1", msg("user", "after the poison"))])
    await project(log, read_model)
    assert len(await read_model.dead_letters()) == 1
    before = await dump(read_model)
    result = await rebuild(read_model, log, batch=10)
    assert result.dead_lettered == 1
    assert await dump(read_model) == before
    (letter,) = await read_model.dead_letters()
    assert letter.type == "session.renamed.v1" and letter.version == 2

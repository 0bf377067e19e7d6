"""The read-model contract, rebuild: from the archive and the log, resumable, then a switch no reader can see;
and the lifecycle (see ``contract``)."""

from __future__ import annotations

import asyncio

import pytest

from events import EventLog
from projections.api import PROJECTION, Checkpoint, ReadModel
from projections.memory import InMemoryReadModel
from projections.rebuild import RebuildProgress, rebuild
from tests.events.factories import added, created, msg

from .contract import ReadModelCase, T, append, workload, written
from .helpers import dump, entries_of, project


class RebuildContract(ReadModelCase):
    """How every ``ReadModel`` is rebuilt and switched over."""

    # -- rebuild ---------------------------------------------------------------------------------------------

    async def test_rebuild_equals_incremental(self, log: EventLog, read_model: ReadModel) -> None:
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

    async def test_rebuild_reads_the_log_tail_and_serves_meanwhile(
        self, log: EventLog, read_model: ReadModel
    ) -> None:
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
        assert {p: cp.position for p, cp in cps.items()} == {
            p: pos for p, pos in result.positions.items() if pos
        }
        assert {cp.epoch for cp in cps.values()} == {3}
        assert await read_model.get_session(T, "late-s0-0") is not None
        await project(log, read_model, epoch=3)  # the projector goes on from the new checkpoints
        fresh = InMemoryReadModel()
        await project(log, fresh)
        assert await dump(read_model) == await dump(fresh)

    async def test_rebuild_from_the_archive_after_a_trim(self, log: EventLog, read_model: ReadModel) -> None:
        await workload(log, rounds=2)
        await project(log, read_model)
        before = await dump(read_model)
        for p in range(log.partitions):
            await log.redis.xtrim(log.keys.log(p), maxlen=0, approximate=False)
        await rebuild(read_model, log, batch=4)
        assert await dump(read_model) == before

    async def test_rebuild_is_cancellable_and_resumable(self, log: EventLog, read_model: ReadModel) -> None:
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

    async def test_rebuild_dead_letters_poison_again(self, log: EventLog, read_model: ReadModel) -> None:
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

    # -- the rest of the contract: lifecycle, and a switch no reader can see ---------------------------------

    async def test_implements_the_whole_contract(self, read_model: ReadModel) -> None:
        assert isinstance(read_model, ReadModel)
        assert await read_model.pending_migrations() == []  # opened migrated (PostgreSQL), or nothing to do

    async def test_the_switch_holds_writers_off_while_the_shadow_catches_up(
        self, log: EventLog, read_model: ReadModel
    ) -> None:
        await append(log, created("s1", "u1"))
        await append(log, added("s1", msg("user", "a")))
        ((p, entries),) = (await entries_of(log)).items()
        await read_model.apply_batch(p, entries[:1], expected=None, epoch=2)
        shadow = await read_model.open_shadow(fresh=True)
        seen: dict[str, object] = {}

        async def catch_up(live: dict[int, Checkpoint]) -> None:
            seen["live"] = {q: (cp.position, cp.epoch) for q, cp in live.items()}
            # A projector's next batch arrives now: it must wait for the switch, then land on the new state.
            writer = asyncio.ensure_future(
                read_model.apply_batch(p, entries[1:], expected=entries[0].position, epoch=2)
            )
            await asyncio.sleep(0.3)
            seen["held"] = not writer.done()
            seen["writer"] = writer
            # Meanwhile the old state still serves.
            assert (await read_model.get_messages(T, "s1")).total == 0
            await shadow.apply_batch(p, entries[:1], expected=None, epoch=0)

        await read_model.switch_to(shadow, catch_up=catch_up)
        writer = seen["writer"]
        assert isinstance(writer, asyncio.Future)
        outcome = await asyncio.wait_for(writer, 10)
        assert seen["live"] == {p: (entries[0].position, 2)}
        assert seen["held"] is True
        assert outcome.position == entries[1].position
        cp = (await read_model.checkpoints())[p]
        assert (cp.position, cp.epoch) == (entries[1].position, 2)
        assert [m.content for m in (await read_model.get_messages(T, "s1")).messages] == ["a"]

    async def test_a_failed_catch_up_switches_nothing(self, log: EventLog, read_model: ReadModel) -> None:
        await written(log, read_model, created("s1", "u1"))
        before = await dump(read_model)
        shadow = await read_model.open_shadow(fresh=True)

        async def catch_up(live: dict[int, Checkpoint]) -> None:
            raise RuntimeError("boom")

        with pytest.raises(RuntimeError):
            await read_model.switch_to(shadow, catch_up=catch_up)
        assert await dump(read_model) == before
        await written(log, read_model, added("s1", msg("user", "still writable")))
        assert (await read_model.get_messages(T, "s1")).total == 1

    async def test_a_rebuild_takes_nothing_away_from_a_reader(
        self, log: EventLog, read_model: ReadModel
    ) -> None:
        """Issue 15, item 11: what the live projectors applied after the rebuild's last pass over the log is
        in the new tables too. No checkpoint goes back, no row is missing, at the switch and after it."""
        await workload(log, rounds=2)
        await project(log, read_model, epoch=3)
        at_switch: dict[str, object] = {}

        class LateProjector:
            """The live read model, whose projector applies more entries just before the switch."""

            def __getattr__(self, name: str) -> object:
                return getattr(read_model, name)

            async def switch_to(self, shadow: ReadModel, projection: str = PROJECTION, **kw: object) -> None:
                await workload(log, rounds=1, tenant_prefix="late-")
                await project(log, read_model, epoch=3)
                at_switch["rows"] = await dump(read_model)
                at_switch["checkpoints"] = await read_model.checkpoints()
                await read_model.switch_to(shadow, projection, **kw)  # type: ignore[arg-type]

        await rebuild(LateProjector(), log, batch=10)  # type: ignore[arg-type]
        assert await dump(read_model) == at_switch["rows"]
        before = at_switch["checkpoints"]
        assert isinstance(before, dict)
        after = await read_model.checkpoints()
        assert {p: (cp.position, cp.epoch) for p, cp in after.items()} == {
            p: (cp.position, cp.epoch) for p, cp in before.items()
        }
        assert (await read_model.get_messages(T, "late-s0-0")).total == 3

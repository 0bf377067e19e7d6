"""The read-model contract, the write side: checkpoints, the compare-and-set, fencing, the guard, poison, dead
letters (see ``contract``)."""

from __future__ import annotations

import msgspec
import pytest

from events import EventLog, RawEntry
from events.codec import encode_event
from projections.api import PROJECTION, AuditFilter, ReadModel
from projections.errors import FencedOut, InvalidBatch, PoisonEvent
from tests.events.factories import added, created, msg, saved

from .contract import ReadModelCase, T, append
from .helpers import dump, entries_of, project


class WriteContract(ReadModelCase):
    """How every ``ReadModel`` applies batches and dead letters."""

    # -- the write side: checkpoints, compare-and-set, fencing, the guard, poison, dead letters --------------

    async def test_checkpoints_follow_the_batches(self, log: EventLog, read_model: ReadModel) -> None:
        assert await read_model.checkpoints() == {}
        await append(log, created("s1", "u1"))
        await append(log, saved("u2", "k", 1))
        await project(log, read_model, epoch=3)
        entries = await entries_of(log)
        cps = await read_model.checkpoints()
        assert {p: cp.position for p, cp in cps.items()} == {p: es[-1].position for p, es in entries.items()}
        assert {cp.epoch for cp in cps.values()} == {3}
        assert all(cp.updated_at is not None for cp in cps.values())
        assert await read_model.checkpoints("another") == {}

    async def test_compare_and_set_and_fencing(self, log: EventLog, read_model: ReadModel) -> None:
        await append(log, created("s1", "u1"))
        await append(log, added("s1", msg("user", "a")))
        await append(log, added("s1", msg("user", "b")))
        ((p, entries),) = (await entries_of(log)).items()
        out = await read_model.apply_batch(p, entries[:1], expected=None, epoch=2)
        assert out.position == entries[0].position and out.applied == 1
        before = await dump(read_model)
        # Another writer's view of the position: refused, nothing written.
        with pytest.raises(FencedOut):
            await read_model.apply_batch(p, entries[1:], expected=None, epoch=2)
        with pytest.raises(FencedOut):
            await read_model.apply_batch(p, entries[2:], expected=entries[1].position, epoch=2)
        # An older epoch: fenced out, even at the right position.
        with pytest.raises(FencedOut) as info:
            await read_model.apply_batch(p, entries[1:2], expected=entries[0].position, epoch=1)
        assert info.value.details["stored_epoch"] == 2
        assert await dump(read_model) == before
        # A newer epoch takes over.
        out = await read_model.apply_batch(p, entries[1:2], expected=entries[0].position, epoch=5)
        assert (out.position, out.messages) == (entries[1].position, 1)
        assert (await read_model.checkpoints())[p].epoch == 5
        with pytest.raises(FencedOut):
            await read_model.apply_batch(p, entries[2:], expected=entries[1].position, epoch=4)
        # An empty batch only claims the partition for the epoch.
        out = await read_model.apply_batch(p, [], expected=entries[1].position, epoch=6)
        assert out.position == entries[1].position and out.applied == 0
        assert (await read_model.checkpoints())[p].epoch == 6
        out = await read_model.apply_batch(p, entries[2:], expected=entries[1].position, epoch=6)
        assert (await read_model.get_messages(T, "s1")).total == 2

    async def test_batches_must_be_in_order(self, log: EventLog, read_model: ReadModel) -> None:
        await append(log, created("s1", "u1"))
        await append(log, added("s1", msg("user", "a")))
        ((p, entries),) = (await entries_of(log)).items()
        with pytest.raises(InvalidBatch):
            await read_model.apply_batch(p + 1, entries, expected=None, epoch=1)
        with pytest.raises(InvalidBatch):
            await read_model.apply_batch(p, entries[::-1], expected=None, epoch=1)
        with pytest.raises(InvalidBatch):
            await read_model.apply_batch(p, entries[:1], expected=entries[1].position, epoch=1)

    async def test_guard_refuses_a_double_apply(self, log: EventLog, read_model: ReadModel) -> None:
        await append(log, created("s1", "u1"))
        await append(log, added("s1", msg("user", "a")))
        await append(log, saved("u1", "k", 1, session="s1"))
        ((p, entries),) = (await entries_of(log)).items()
        await read_model.apply_batch(p, entries[:2], expected=None, epoch=1)
        before = await dump(read_model)
        # A checkpoint behind the data (here: another projection name over the same tables): the applied
        # entries are skipped, the rest applied once.
        out = await read_model.apply_batch(p, entries, expected=None, epoch=1, projection="other")
        assert (out.applied, out.skipped, out.messages) == (1, 2, 0)
        assert (await read_model.get_messages(T, "s1")).total == 1
        assert (await read_model.get_memory(T, "u1", session_id="s1"))["k"].version == 1
        after = await dump(read_model)
        assert len(after["archive"]) == len(before["archive"]) + 1
        # Another event at an applied aggregate version is poison, and nothing is written.
        forged = created("s1", "u1")
        fake = RawEntry(p, "9999999999999-0", "session.created.v1", 1, encode_event(forged))
        with pytest.raises(PoisonEvent) as info:
            await read_model.apply_batch(
                p, [fake], expected=entries[-1].position, epoch=1, projection="other"
            )
        assert info.value.position == fake.position
        assert await dump(read_model) == after

    @pytest.mark.parametrize(
        "bad",
        [
            RawEntry(0, "", "session.created.v1", 1, b"{not json"),
            RawEntry(0, "", "session.renamed.v1", 1, b'{"type": "session.renamed.v1"}'),
            RawEntry(0, "", "session.created.v1", 0, b""),  # no version
            None,  # messages for a session the read model does not have
            "nul",  # a NUL character, which PostgreSQL text cannot hold
        ],
        ids=["undecodable", "unknown-type", "no-version", "no-session", "nul"],
    )
    async def test_poison_writes_nothing(
        self, log: EventLog, read_model: ReadModel, bad: RawEntry | str | None
    ) -> None:
        await append(log, created("s1", "u1"))
        await append(log, added("s1", msg("user", "ok")))
        await append(log, added("s1", msg("user", "fine")))
        ((p, entries),) = (await entries_of(log)).items()
        await read_model.apply_batch(p, entries[:1], expected=None, epoch=1)
        before = await dump(read_model)
        if isinstance(bad, RawEntry):
            entries[2] = msgspec.structs.replace(bad, partition=p, position=entries[2].position)
        elif bad is None:
            other = added("ghost", msg("user", "x"))
            entries[2] = msgspec.structs.replace(entries[2], data=encode_event(other))
        else:  # the log refuses NUL now (nul_character); an entry written before that rule still holds one
            nul = added("s1", msg("user", "a\x00b"))
            entries[2] = msgspec.structs.replace(entries[2], data=encode_event(nul))
        with pytest.raises(PoisonEvent) as info:
            await read_model.apply_batch(p, entries[1:], expected=entries[0].position, epoch=1)
        assert info.value.position == entries[2].position
        assert info.value.entry == entries[2]
        assert info.value.details["position"] == entries[2].position
        assert await dump(read_model) == before
        assert (await read_model.checkpoints())[p].position == entries[0].position

    async def test_dead_letters(self, log: EventLog, read_model: ReadModel) -> None:
        await append(log, created("s1", "u1"))
        await append(log, added("s1", msg("user", "a")))
        await append(log, added("s1", msg("user", "b")))
        ((p, entries),) = (await entries_of(log)).items()
        await read_model.apply_batch(p, entries[:1], expected=None, epoch=1)
        with pytest.raises(FencedOut):
            await read_model.dead_letter(p, entries[1], "boom", attempts=3, expected=None, epoch=1)
        position = await read_model.dead_letter(
            p, entries[1], "boom", attempts=3, expected=entries[0].position, epoch=1
        )
        assert position == entries[1].position
        assert (await read_model.checkpoints())[p].position == entries[1].position
        (letter,) = await read_model.dead_letters()
        assert (
            letter.id,
            letter.partition,
            letter.position,
            letter.type,
            letter.data,
            letter.error,
            letter.attempts,
            letter.retried,
            letter.version,
        ) == (1, p, entries[1].position, entries[1].type, entries[1].data, "boom", 3, False, 2)
        assert letter.created_at is not None
        await read_model.apply_batch(p, entries[2:], expected=position, epoch=1)
        page = await read_model.get_messages(T, "s1")
        assert [m.content for m in page.messages] == ["b"]  # the dead letter was skipped
        assert await read_model.dead_letters(limit=0) == [letter]

    async def test_every_partition_independent(self, log: EventLog, read_model: ReadModel) -> None:
        for i in range(12):
            await append(log, created(f"s{i}", f"u{i % 3}"))
            await append(log, saved(f"u{i % 3}", f"k{i}", i))
        await project(log, read_model, batch=5)
        assert len(await read_model.checkpoints()) == len(await entries_of(log))
        assert len((await read_model.audit(AuditFilter(), limit=0)).events) == 24
        assert len(await read_model.get_memory(T, "u0")) == 4

    async def test_projection_constant(self) -> None:
        assert PROJECTION == "read_models"

"""The read-model contract (``projections.api.ReadModel``) as a base class: each backend's test module
subclasses ``ReadModelContract`` and says how to open its read model (``create_read_model``), as
eventsourcing's recorder test cases do. Every test here runs on every backend: the in-memory read model
(``test_memory.py``) and PostgreSQL (``test_postgres.py``).

Events come from the real log (its append script, on fakeredis), so versions and positions are the log's.
The class is not collected on its own (its name does not start with ``Test``).
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from datetime import timedelta

import msgspec
import pytest

from events import EventLog, RawEntry, recorded_at_of
from events.codec import encode_event
from projections.api import PROJECTION, AuditFilter, Checkpoint, ReadModel
from projections.errors import FencedOut, InvalidBatch, InvalidCursor, PoisonEvent
from projections.memory import InMemoryReadModel
from projections.rebuild import RebuildProgress, rebuild
from tests.events.factories import added, call, cleared, created, deleted, mem_deleted, msg, saved

from .helpers import dump, entries_of, project

T = "default"


async def append(log: EventLog, *events):  # type: ignore[no-untyped-def]
    result = await log.append(list(events))
    assert result.appended
    return result


async def written(log: EventLog, rm: ReadModel, *events):  # type: ignore[no-untyped-def]
    """Append, then project; returns the append result."""
    result = await append(log, *events)
    await project(log, rm)
    return result


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


class ReadModelContract(ABC):
    """What every ``ReadModel`` must do. A subclass implements ``create_read_model``."""

    @abstractmethod
    async def create_read_model(self, request: pytest.FixtureRequest) -> ReadModel:
        """A new, empty read model of the backend under test (closed by the fixture)."""

    @pytest.fixture
    async def read_model(self, request: pytest.FixtureRequest) -> AsyncIterator[ReadModel]:
        rm = await self.create_read_model(request)
        try:
            yield rm
        finally:
            await rm.close()

    # -- sessions --------------------------------------------------------------------------------------------

    async def test_session_created(self, log: EventLog, read_model: ReadModel) -> None:
        r = await written(log, read_model, created("s1", "u1", topic="x"))
        s = await read_model.get_session(T, "s1")
        assert s is not None
        assert (s.tenant, s.session_id, s.user_id, s.metadata) == (T, "s1", "u1", {"topic": "x"})
        assert s.created_at == s.updated_at == recorded_at_of(r.position)
        assert (s.message_count, s.version, s.deleted) == (0, 1, False)
        assert await read_model.get_session(T, "nope") is None
        assert await read_model.get_session("other", "s1") is None

    async def test_messages_are_numbered_in_log_order(self, log: EventLog, read_model: ReadModel) -> None:
        await append(log, created("s1", "u1"))
        await append(
            log, added("s1", msg("user", "a", timestamp=5), msg("assistant", None, tool_calls=[call("c1")]))
        )
        ev = added("s1", msg("tool", "r", tool_call_id="c1", timestamp=0))
        last = await append(log, ev)
        await project(log, read_model)
        page = await read_model.get_messages(T, "s1")
        assert page.total == 3 and page.next_cursor is None
        assert [(m.seq, m.role, m.content) for m in page.messages] == [
            (1, "user", "a"),
            (2, "assistant", None),
            (3, "tool", "r"),
        ]
        assert page.messages[0].timestamp == 5
        occurred_ms = int(ev.occurred_at.timestamp() * 1000)
        assert abs(page.messages[2].timestamp - occurred_ms) <= 1  # its own was 0: the event's occurred_at
        assert page.messages[1].tool_calls == [
            {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
        ]
        assert page.messages[2].tool_call_id == "c1"
        assert page.messages[2].event_id == str(ev.id)
        s = await read_model.get_session(T, "s1")
        assert s is not None
        assert (s.message_count, s.version, s.updated_at) == (3, 3, recorded_at_of(last.position))

    async def test_message_pages(self, log: EventLog, read_model: ReadModel) -> None:
        await append(log, created("s1", "u1"))
        await append(log, added("s1", *[msg("user", f"m{i}") for i in range(1, 11)]))
        await project(log, read_model)

        async def seqs(**kw):  # type: ignore[no-untyped-def]
            page = await read_model.get_messages(T, "s1", **kw)
            assert page.total == 10
            return [m.seq for m in page.messages], page.next_cursor

        assert (await seqs())[0] == list(range(1, 11))
        assert (await seqs(limit=0))[0] == list(range(1, 11))
        assert (await seqs(limit=3))[0] == [1, 2, 3]
        assert (await seqs(limit=3, offset=2))[0] == [3, 4, 5]
        assert (await seqs(limit=3, order="desc"))[0] == [10, 9, 8]
        assert (await seqs(limit=3, order="desc", offset=1))[0] == [9, 8, 7]
        assert (await seqs(offset=8))[0] == [9, 10]
        assert (await seqs(offset=20))[0] == []
        # Keyset paging both ways, in both orders.
        got, cursor = await seqs(limit=4)
        pages = [got]
        while cursor:
            got, cursor = await seqs(limit=4, after=cursor)
            pages.append(got)
        assert pages == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10]]
        got, cursor = await seqs(limit=4, order="desc")
        pages = [got]
        while cursor:
            got, cursor = await seqs(limit=4, order="desc", after=cursor)
            pages.append(got)
        assert pages == [[10, 9, 8, 7], [6, 5, 4, 3], [2, 1]]
        _, c5 = await seqs(limit=5)  # the cursor of message 5
        assert (await seqs(limit=2, before=c5))[0] == [3, 4]
        assert (await seqs(before=c5))[0] == [1, 2, 3, 4]
        assert (await seqs(limit=2, before=c5, order="desc"))[0] == [7, 6]
        assert (await seqs(after=c5, before=c5))[0] == []
        last, _ = await seqs(limit=1, order="desc")
        assert last == [10]
        assert (await read_model.get_messages(T, "nope")).total == 0
        with pytest.raises(InvalidCursor):
            await read_model.get_messages(T, "s1", after="garbage")
        with pytest.raises(InvalidCursor):
            await read_model.get_messages(T, "s1", after="s.WzFd")  # a cursor of another listing

    async def test_list_sessions_newest_first_with_cursor(self, log: EventLog, read_model: ReadModel) -> None:
        for i in range(5):
            await append(log, created(f"s{i}", "u1"))
        await append(log, created("x", "u2"))
        await append(log, created("s0", "u1", tenant="t2"))
        await append(log, added("s1", msg("user", "recent")))  # s1 becomes the most recent
        await append(log, deleted("s3"))
        await project(log, read_model)
        page = await read_model.list_sessions(T, "u1")
        assert [s.session_id for s in page.sessions] == ["s1", "s4", "s2", "s0"]
        assert page.next_cursor is None
        got, cursor = [], None
        while True:
            page = await read_model.list_sessions(T, "u1", limit=3, after=cursor)
            got.append([s.session_id for s in page.sessions])
            cursor = page.next_cursor
            if cursor is None:
                break
        assert got == [["s1", "s4", "s2"], ["s0"]]
        assert [s.session_id for s in (await read_model.list_sessions("t2", "u1")).sessions] == ["s0"]
        assert (await read_model.list_sessions(T, "nobody")).sessions == []

    async def test_session_deleted(self, log: EventLog, read_model: ReadModel) -> None:
        await append(log, created("s1", "u1"))
        await append(log, added("s1", msg("user", "a"), msg("user", "b")))
        await append(log, saved("u1", "k", "session value", session="s1"))
        await append(log, saved("u1", "k", "user value"))
        gone = await append(log, deleted("s1"))
        await project(log, read_model)
        s = await read_model.get_session(T, "s1")
        assert s is not None and s.deleted
        assert (s.version, s.updated_at) == (4, recorded_at_of(gone.position))
        page = await read_model.get_messages(T, "s1")
        assert page.messages == [] and page.total == 0
        assert await read_model.get_memory(T, "u1", session_id="s1") == {}
        assert list(await read_model.get_memory(T, "u1")) == ["k"]
        assert (await read_model.list_sessions(T, "u1")).sessions == []
        events = (await read_model.audit(AuditFilter(session_id="s1"))).events
        assert [e.type for e in events] == [
            "session.created.v1",
            "session.messages_added.v1",
            "memory.saved.v1",
            "session.deleted.v1",
        ]

    async def test_deleted_in_the_same_batch_leaves_nothing(
        self, log: EventLog, read_model: ReadModel
    ) -> None:
        await append(log, created("s1", "u1"))
        await append(log, added("s1", msg("user", "a")))
        await append(log, saved("u1", "k", 1, session="s1"))
        await append(log, deleted("s1"))
        await project(log, read_model)  # one batch: added, saved and deleted fold into nothing
        assert (await read_model.get_messages(T, "s1")).total == 0
        assert await read_model.get_memory(T, "u1", session_id="s1") == {}
        rows = await dump(read_model)
        assert rows["messages"] == [] and rows["memories"] == []

    # -- memory ----------------------------------------------------------------------------------------------

    async def test_memory_versions_and_times(self, log: EventLog, read_model: ReadModel) -> None:
        first = await append(log, saved("u1", "k", {"a": 1}))
        second = await append(log, saved("u1", "k", [1, 2]))
        await project(log, read_model)
        m = (await read_model.get_memory(T, "u1"))["k"]
        assert (m.user_id, m.session_id, m.key, m.value, m.version) == ("u1", None, "k", [1, 2], 2)
        assert m.created_at == recorded_at_of(first.position)
        assert m.updated_at == recorded_at_of(second.position)
        await written(log, read_model, mem_deleted("u1", "k"))
        assert await read_model.get_memory(T, "u1") == {}
        await written(log, read_model, saved("u1", "k", None))
        m = (await read_model.get_memory(T, "u1"))["k"]
        assert (m.value, m.version) == (None, 1)  # a deleted key starts over

    async def test_memory_scopes_merged_and_key(self, log: EventLog, read_model: ReadModel) -> None:
        await append(log, created("s1", "u1"))
        await append(log, saved("u1", "shared", "user"))
        await append(log, saved("u1", "only_user", 1))
        await append(log, saved("u1", "shared", "session", session="s1"))
        await append(log, saved("u1", "only_session", 2, session="s1"))
        await project(log, read_model)
        user = await read_model.get_memory(T, "u1")
        assert {k: v.value for k, v in user.items()} == {"only_user": 1, "shared": "user"}
        sess = await read_model.get_memory(T, "u1", session_id="s1")
        assert {k: v.value for k, v in sess.items()} == {"only_session": 2, "shared": "session"}
        assert all(v.session_id == "s1" for v in sess.values())
        merged = await read_model.get_memory(T, "u1", session_id="s1", merged=True)
        assert {k: v.value for k, v in merged.items()} == {
            "only_session": 2,
            "only_user": 1,
            "shared": "session",
        }
        assert list(merged) == sorted(merged)
        one = await read_model.get_memory(T, "u1", session_id="s1", merged=True, key="only_user")
        assert {k: v.value for k, v in one.items()} == {"only_user": 1}
        assert await read_model.get_memory(T, "u1", key="missing") == {}
        assert await read_model.get_memory("t2", "u1") == {}

    async def test_memory_cleared_by_scope(self, log: EventLog, read_model: ReadModel) -> None:
        await append(log, created("s1", "u1"))
        await append(log, saved("u1", "a", 1))
        await append(log, saved("u1", "b", 2, session="s1"))
        await written(log, read_model, cleared("u1", session="s1"))
        assert await read_model.get_memory(T, "u1", session_id="s1") == {}
        assert list(await read_model.get_memory(T, "u1")) == ["a"]
        await append(log, saved("u1", "b", 3, session="s1"))
        await written(log, read_model, cleared("u1"))
        assert await read_model.get_memory(T, "u1") == {}
        assert list(await read_model.get_memory(T, "u1", session_id="s1")) == ["b"]
        # Cleared, then saved again in one batch: only the later save stays, at version 1.
        await append(log, saved("u1", "b", 4, session="s1"))
        await append(log, cleared("u1", session="s1"))
        await written(log, read_model, saved("u1", "c", 5, session="s1"))
        sess = await read_model.get_memory(T, "u1", session_id="s1")
        assert {k: (v.value, v.version) for k, v in sess.items()} == {"c": (5, 1)}

    # -- audit -----------------------------------------------------------------------------------------------

    async def test_audit_filters_and_cursor(self, log: EventLog, read_model: ReadModel) -> None:
        a = await append(log, created("s1", "u1"))
        await append(log, added("s1", msg("user", "x")))
        await append(log, saved("u1", "k", 1))
        await append(log, created("s2", "u2"))
        model = added("s2", msg("assistant", "y"))
        model = msgspec.structs.replace(
            model, actor=msgspec.structs.replace(model.actor, kind="model", id="gpt"), correlation_id="corr-1"
        )
        await append(log, model)
        await append(log, created("s9", "u1", tenant="t2"))
        await project(log, read_model)
        everything = (await read_model.audit(AuditFilter())).events
        assert len(everything) == 5
        keys = [
            (e.recorded_at, e.partition, tuple(int(x) for x in e.position.split("-"))) for e in everything
        ]
        assert keys == sorted(keys)
        assert everything[0].payload == {"user_id": "u1", "metadata": {}}
        assert everything[0].event_id and everything[0].version == 1 and everything[0].position == a.position

        async def types(**kw):  # type: ignore[no-untyped-def]
            return [(e.aggregate_id, e.type) for e in (await read_model.audit(AuditFilter(**kw))).events]

        assert await types(session_id="s1") == [
            ("s1", "session.created.v1"),
            ("s1", "session.messages_added.v1"),
        ]
        # (Events of one millisecond are ordered by partition: compare with the order of ``everything``.)
        assert await types(user_id="u1") == [
            (e.aggregate_id, e.type) for e in everything if e.user_id == "u1"
        ]
        assert len(await types(user_id="u1")) == 3
        assert await types(types=["memory.saved.v1"]) == [("u1", "memory.saved.v1")]
        assert await types(types=[]) == []
        assert await types(actor_kind="model") == [("s2", "session.messages_added.v1")]
        assert await types(actor_kind="model", actor_id="other") == []
        assert await types(actor_id="gpt") == [("s2", "session.messages_added.v1")]
        assert await types(tenant="t2") == [("s9", "session.created.v1")]
        model_event = (await read_model.audit(AuditFilter(actor_kind="model"))).events[0]
        assert model_event.correlation_id == "corr-1" and model_event.causation_id is None
        assert model_event.user_id == "u2"
        # Time bounds: since <= recorded_at < until.
        third = everything[2].recorded_at
        got = await types(since=third)
        assert got == [(e.aggregate_id, e.type) for e in everything if e.recorded_at >= third]
        got = await types(until=third)
        assert got == [(e.aggregate_id, e.type) for e in everything if e.recorded_at < third]
        assert (
            await types(since=third + timedelta(microseconds=1), until=third + timedelta(microseconds=999))
            == []
        )
        # Paging with the cursor walks everything once, in order.
        seen, cursor = [], None
        while True:
            page = await read_model.audit(AuditFilter(), limit=2, after=cursor)
            seen.extend(e.event_id for e in page.events)
            cursor = page.next_cursor
            if cursor is None:
                break
        assert seen == [e.event_id for e in everything]
        with pytest.raises(InvalidCursor):
            await read_model.audit(AuditFilter(), after="m.WzFd")

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

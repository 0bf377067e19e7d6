"""The read-model contract, the queries: sessions, messages and their pages, memory, the audit (see
``contract``)."""

from __future__ import annotations

from datetime import timedelta

import msgspec
import pytest

from events import EventLog, recorded_at_of
from projections.api import AuditFilter, ReadModel
from projections.errors import InvalidCursor
from tests.events.factories import added, call, cleared, created, deleted, mem_deleted, msg, saved

from .contract import ReadModelCase, T, append, written
from .helpers import dump, project


class QueryContract(ReadModelCase):
    """What every ``ReadModel`` answers."""

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

"""Property: random command sequences give the same outcomes, versions and events as a simple model."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import Any

import fakeredis
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events import EventLog, LogSettings, SessionsError, decode_entry
from events.schema import Event
from tests.fix_redis import delete_prefix, real_redis

from .factories import added, call, cleared, created, deleted, forgotten, mem_deleted, msg, saved

SIDS = ["s0", "s1", "s2"]
USERS = ["u0", "u1"]
KEYS = ["k0", "k1"]
CALLS = ["c0", "c1", "c2"]


@dataclass
class Session:
    owner: str
    version: int = 1
    deleted: bool = False
    messages: int = 0
    calls: dict[str, bool] = field(default_factory=dict)  # call id -> answered
    memory: set[str] = field(default_factory=set)


@dataclass
class Model:
    """The rules of the append script, restated as plainly as possible."""

    sessions: dict[str, Session] = field(default_factory=dict)
    user_memory: dict[str, set[str]] = field(default_factory=dict)
    user_versions: dict[str, int] = field(default_factory=dict)
    log: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # aggregate -> event types in order

    def _record(self, kind: str, agg: str, type_: str) -> int:
        self.log.setdefault((kind, agg), []).append(type_)
        return len(self.log[(kind, agg)])

    def run(self, cmd: tuple[Any, ...]) -> tuple[Any, ...]:
        op = cmd[0]
        if op == "create":
            _, sid, user = cmd
            s = self.sessions.get(sid)
            if s and s.owner != user:
                return ("error", "session_owned_by_another_user")
            if s and s.deleted:
                return ("error", "session_deleted")
            if s:
                return ("ok", False, s.version, 0)
            self.sessions[sid] = Session(owner=user)
            return ("ok", True, self._record("session", sid, "session.created.v1"), 0)
        if op in ("add", "delete", "ssave", "sdel", "sclear"):
            sid = cmd[1]
            s = self.sessions.get(sid)
            if s is None:
                return (
                    "error",
                    "memory_session_not_found" if op in ("ssave", "sdel", "sclear") else "session_not_found",
                )
            if s.deleted:
                return ("error", "session_deleted")
            if op == "add":
                return self._add(sid, s, cmd[2])
            if op == "delete":
                s.deleted, s.memory = True, set()
                s.version = self._record("session", sid, "session.deleted.v1")
                return ("ok", True, s.version, 0)
            user, key = cmd[2], cmd[3] if len(cmd) > 3 else None
            if s.owner != user:
                return ("error", "memory_session_not_owned")
            return self._memory(op[1:], "session", sid, s.memory, key, s)
        if op == "forget":
            # Always appended (the audit trail records every erasure); clears the user-scope keys.
            keys = self.user_memory.setdefault(cmd[1], set())
            n = len(keys)
            keys.clear()
            v = self._record("memory", cmd[1], "user.forgotten.v1")
            self.user_versions[cmd[1]] = v
            return ("ok", True, v, n)
        if op in ("save", "del", "clear"):
            user, key = cmd[1], cmd[2] if len(cmd) > 2 else None
            return self._memory(op, "memory", user, self.user_memory.setdefault(user, set()), key, None)
        raise AssertionError(op)

    def _add(self, sid: str, s: Session, messages: list[tuple[str, str]]) -> tuple[Any, ...]:
        calls = dict(s.calls)
        for role, ref in messages:
            if role == "call":
                if ref in calls:
                    return ("error", "duplicate_tool_call_id")
                calls[ref] = False
            elif role == "tool":
                if ref not in calls:
                    return ("error", "unknown_tool_call")
                if calls[ref]:
                    return ("error", "tool_call_already_answered")
                calls[ref] = True
        s.calls = calls
        s.messages += len(messages)
        s.version = self._record("session", sid, "session.messages_added.v1")
        return ("ok", True, s.version, 0)

    def _memory(
        self, op: str, kind: str, agg: str, keys: set[str], key: str | None, s: Session | None
    ) -> tuple[Any, ...]:
        def version() -> int:
            return s.version if s else self.user_versions.get(agg, 0)

        def bump(type_: str) -> int:
            v = self._record(kind, agg, type_)
            if s:
                s.version = v
            else:
                self.user_versions[agg] = v
            return v

        if op == "save":
            keys.add(key)  # type: ignore[arg-type]
            return ("ok", True, bump("memory.saved.v1"), 0)
        if op == "del":
            if key not in keys:
                return ("ok", False, version(), 0)
            keys.discard(key)  # type: ignore[arg-type]
            return ("ok", True, bump("memory.deleted.v1"), 1)
        n = len(keys)
        if n == 0:
            return ("ok", False, version(), 0)
        keys.clear()
        return ("ok", True, bump("memory.cleared.v1"), n)


def to_event(cmd: tuple[Any, ...]) -> Event:
    op = cmd[0]
    if op == "create":
        return created(cmd[1], cmd[2])
    if op == "add":
        parts = []
        for role, ref in cmd[2]:
            if role == "call":
                parts.append(msg("assistant", None, tool_calls=[call(ref)]))
            elif role == "tool":
                parts.append(msg("tool", "result", tool_call_id=ref))
            else:
                parts.append(msg(role, "text"))
        return added(cmd[1], *parts)
    if op == "delete":
        return deleted(cmd[1])
    if op == "save":
        return saved(cmd[1], cmd[2], {"v": 1})
    if op == "del":
        return mem_deleted(cmd[1], cmd[2])
    if op == "clear":
        return cleared(cmd[1])
    if op == "forget":
        return forgotten(cmd[1])
    if op == "ssave":
        return saved(cmd[2], cmd[3], [1, 2], session=cmd[1])
    if op == "sdel":
        return mem_deleted(cmd[2], cmd[3], session=cmd[1])
    if op == "sclear":
        return cleared(cmd[2], session=cmd[1])
    raise AssertionError(op)


sid = st.sampled_from(SIDS)
user = st.sampled_from(USERS)
key = st.sampled_from(KEYS)
message = st.one_of(
    st.tuples(st.sampled_from(["user", "assistant", "system"]), st.just("")),
    st.tuples(st.just("call"), st.sampled_from(CALLS)),
    st.tuples(st.just("tool"), st.sampled_from(CALLS)),
)
command = st.one_of(
    st.tuples(st.just("create"), sid, user),
    st.tuples(st.just("add"), sid, st.lists(message, min_size=1, max_size=4)),
    st.tuples(st.just("delete"), sid),
    st.tuples(st.just("save"), user, key),
    st.tuples(st.just("del"), user, key),
    st.tuples(st.just("clear"), user),
    st.tuples(st.just("forget"), user),
    st.tuples(st.just("ssave"), sid, user, key),
    st.tuples(st.just("sdel"), sid, user, key),
    st.tuples(st.just("sclear"), sid, user),
)


async def check(client: Any, commands: list[tuple[Any, ...]]) -> None:
    prefix = f"prop-{uuid.uuid4().hex[:10]}"
    log = EventLog(client, LogSettings(prefix=prefix, partitions=4))
    await log.setup()
    model = Model()
    try:
        for cmd in commands:
            expected = model.run(cmd)
            try:
                r = await log.append([to_event(cmd)])
                got: tuple[Any, ...] = ("ok", r.appended, r.version, r.removed)
            except SessionsError as e:
                got = ("error", e.code)
            assert got == expected, cmd
        seen: dict[tuple[str, str], list[tuple[int, str]]] = {}
        for p in range(log.partitions):
            for entry in await log.read(p, count=10_000):
                event = decode_entry(entry)
                seen.setdefault((event.aggregate_kind, event.aggregate_id), []).append(
                    (event.version, entry.type)
                )
        assert {k: [t for _, t in v] for k, v in seen.items()} == model.log
        for events in seen.values():
            assert [v for v, _ in events] == list(range(1, len(events) + 1))
    finally:
        await delete_prefix(client, prefix)


@pytest.mark.parametrize("backend", ["fakeredis", "redis"])
def test_random_command_sequences_match_the_model(backend: str) -> None:
    @settings(
        max_examples=200 if backend == "fakeredis" else 80,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(st.lists(command, min_size=3, max_size=60))
    def run(commands: list[tuple[Any, ...]]) -> None:
        async def go() -> None:
            client = fakeredis.FakeAsyncRedis() if backend == "fakeredis" else await real_redis()
            try:
                await check(client, commands)
            finally:
                await client.aclose()

        asyncio.run(go())

    run()

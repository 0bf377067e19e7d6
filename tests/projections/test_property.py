"""Property: however a log is cut into batches, and whichever batches are replayed because their commit (or
only its reply) was lost, the read models come out the same, row for row, on both backends.

A lost commit is an attempt that dies partway (nothing is written; the same batch is retried); a lost reply
is an attempt that committed but whose caller never heard (the retry is refused with FencedOut, and the
caller reloads the checkpoint). The log is the real one (its append script on fakeredis): the generated
commands go through every rule it enforces, so versions, positions and refusals are real.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from typing import Any
from unittest import mock

import fakeredis
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events import EventLog, LogSettings, RawEntry, SessionsError
from projections.api import ReadModel
from projections.apply import Changes
from projections.errors import FencedOut
from projections.memory import InMemoryReadModel
from projections.postgres import PostgresReadModel
from tests.events.factories import added, cleared, created, deleted, mem_deleted, msg, saved
from tests.fix_pg import PG_DSN

from .helpers import dump, entries_of

SESSIONS = st.sampled_from(["s0", "s1", "s2"])
USERS = st.sampled_from(["u0", "u1"])
KEYS = st.sampled_from(["k0", "k1", "k2"])
SCOPES = st.none() | SESSIONS
TEXT = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=8)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=6,
)
COMMANDS = st.lists(
    st.one_of(
        st.tuples(st.just("create"), SESSIONS, USERS),
        st.tuples(st.just("add"), SESSIONS, st.lists(TEXT, min_size=1, max_size=3)),
        st.tuples(st.just("delete"), SESSIONS),
        st.tuples(st.just("save"), USERS, KEYS, SCOPES, JSON),
        st.tuples(st.just("mdel"), USERS, KEYS, SCOPES),
        st.tuples(st.just("clear"), USERS, SCOPES),
    ),
    min_size=1,
    max_size=30,
)
MODES = st.sampled_from(["ok", "ok", "lost_commit", "lost_reply"])


def event_of(cmd: tuple[Any, ...]) -> Any:
    match cmd:
        case ("create", sid, user):
            return created(sid, user)
        case ("add", sid, texts):
            return added(sid, *[msg("user", t) for t in texts])
        case ("delete", sid):
            return deleted(sid)
        case ("save", user, key, scope, value):
            return saved(user, key, value, session=scope)
        case ("mdel", user, key, scope):
            return mem_deleted(user, key, session=scope)
        case ("clear", user, scope):
            return cleared(user, session=scope)
    raise AssertionError(cmd)


async def generate(commands: list[tuple[Any, ...]]) -> dict[int, list[RawEntry]]:
    log = EventLog(fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer()), LogSettings(partitions=3))
    await log.setup()
    for cmd in commands:
        # A refusal by the log's rules (no such session, another user's, ...) leaves nothing in the log.
        with contextlib.suppress(SessionsError):
            await log.append([event_of(cmd)])
    entries = await entries_of(log)
    await log.close()
    return entries


class Crash(Exception):
    pass


def dies_at(index: int) -> Any:
    real = Changes.add
    calls = 0

    def add(self: Changes, *args: Any, **kw: Any) -> None:
        nonlocal calls
        if calls == index:
            raise Crash
        calls += 1
        real(self, *args, **kw)

    return add


async def apply_in_batches(rm: ReadModel, entries: dict[int, list[RawEntry]], plan: Any) -> None:
    for p, es in entries.items():
        cuts = sorted(
            set(plan.draw(st.lists(st.integers(1, max(len(es) - 1, 1)), max_size=4), label=f"cuts{p}"))
        )
        bounds = [0, *[c for c in cuts if c < len(es)], len(es)]
        position: str | None = None
        for lo, hi in itertools.pairwise(bounds):
            batch = es[lo:hi]
            mode = plan.draw(MODES, label="mode")
            if mode == "lost_commit":
                # The attempt dies partway (here: while folding entry ``at``), so it never commits; the
                # projector retries the same batch.
                at = plan.draw(st.integers(0, len(batch) - 1), label="dies at")
                with mock.patch.object(Changes, "add", dies_at(at)), pytest.raises(Crash):
                    await rm.apply_batch(p, batch, expected=position, epoch=1)
            outcome = await rm.apply_batch(p, batch, expected=position, epoch=1)
            if mode == "lost_reply":
                # Committed, but the reply was lost: the retry is refused, the projector reloads.
                with pytest.raises(FencedOut):
                    await rm.apply_batch(p, batch, expected=position, epoch=1)
                cp = (await rm.checkpoints())[p]
                assert cp.position == outcome.position
            position = outcome.position


async def reference(entries: dict[int, list[RawEntry]]) -> dict[str, Any]:
    rm = InMemoryReadModel()
    for p, es in entries.items():
        await rm.apply_batch(p, es, expected=None, epoch=1)
    return await dump(rm)


@settings(max_examples=150, deadline=None)
@given(commands=COMMANDS, plan=st.data())
def test_any_batching_gives_the_same_read_models_in_memory(commands: Any, plan: Any) -> None:
    async def example() -> None:
        entries = await generate(commands)
        rm = InMemoryReadModel()
        await apply_in_batches(rm, entries, plan)
        assert await dump(rm) == await reference(entries)

    asyncio.run(example())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(commands=COMMANDS, plan=st.data())
def test_any_batching_gives_the_same_read_models_in_postgres(
    pg_schema: str, commands: Any, plan: Any
) -> None:
    async def example() -> None:
        entries = await generate(commands)
        schema = f"{pg_schema}__{uuid.uuid4().hex[:6]}"  # dropped with pg_schema
        rm = await PostgresReadModel.open(PG_DSN, schema, min_size=1, max_size=1)
        try:
            await apply_in_batches(rm, entries, plan)
            assert await dump(rm) == await reference(entries)
        finally:
            await rm.close()

    asyncio.run(example())

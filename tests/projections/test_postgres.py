"""The PostgreSQL read model: the whole read-model contract (``contract``: queries, writes, rebuild), and what
only it has: migration status, outages, concurrent writers, query plans, settings."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest

from events import EventLog
from projections import apply as apply_module
from projections import store
from projections.api import Checkpoint, ReadModel
from projections.apply import decode
from projections.errors import FencedOut, ReadModelError, ReadModelUnavailable
from projections.memory import InMemoryReadModel
from projections.migrations import migrate, migrations
from projections.postgres import PostgresReadModel
from projections.postgres_batch import _version_ranges
from projections.settings import ReadModelSettings, open_read_model
from tests.events.factories import added, created, msg, saved
from tests.fix_pg import PG_DSN

from .contract_queries import QueryContract
from .contract_rebuild import RebuildContract
from .contract_writes import WriteContract
from .helpers import dump, entries_of, project

T = "default"


class TestPostgresReadModel(QueryContract, WriteContract, RebuildContract):
    async def create_read_model(self, request: pytest.FixtureRequest) -> ReadModel:
        schema = request.getfixturevalue("pg_schema")
        return await PostgresReadModel.open(PG_DSN, schema, min_size=1, max_size=4)


async def test_pending_migrations_name_what_the_schema_lacks(pg_schema: str) -> None:
    rm = await PostgresReadModel.open(PG_DSN, pg_schema, min_size=1, max_size=1, run_migrations=False)
    try:
        assert await rm.pending_migrations() == [m.version for m in migrations()]  # never migrated
        await migrate(rm.pool, pg_schema)
        assert await rm.pending_migrations() == []
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f'DELETE FROM "{pg_schema}".schema_migrations WHERE version = 2')
        assert await rm.pending_migrations() == [2]
    finally:
        await rm.close()
    await rm.close()  # idempotent


async def test_a_switch_with_a_catch_up_needs_two_connections(pg_schema: str) -> None:
    rm = await PostgresReadModel.open(PG_DSN, pg_schema, min_size=1, max_size=1)
    try:
        shadow = await rm.open_shadow()

        async def catch_up(live: dict[int, Checkpoint]) -> None:
            raise AssertionError("not reached")

        with pytest.raises(ReadModelError) as e:
            await rm.switch_to(shadow, catch_up=catch_up)
        assert "SESSIONS_DB_POOL_MAX" in e.value.message
    finally:
        await rm.close()


def terminate(rm: PostgresReadModel) -> None:
    """Kill every server process of the read model's pool (what a PostgreSQL restart does to it)."""
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        killed = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE pid <> pg_backend_pid() AND position(%s in query) > 0",
            [rm.sql.q],
        ).fetchall()
    assert killed, "no connection of the read model to terminate"


@pytest.fixture
async def pg(pg_schema: str) -> Any:
    rm = await PostgresReadModel.open(PG_DSN, pg_schema, min_size=1, max_size=2)
    yield rm
    await rm.close()


async def test_unreachable_server_is_unavailable() -> None:
    with pytest.raises(ReadModelUnavailable):
        await PostgresReadModel.open("postgresql://postgres@127.0.0.1:1/test", timeout=0.5)


async def test_a_broken_connection_is_unavailable_then_retried(pg: PostgresReadModel, log: EventLog) -> None:
    await log.append([created("s1", "u1")])
    await log.append([added("s1", msg("user", "a"))])
    ((p, entries),) = (await entries_of(log)).items()
    await pg.get_session(T, "s1")  # a pooled connection exists
    terminate(pg)
    with pytest.raises(ReadModelUnavailable):
        await pg.apply_batch(p, entries, expected=None, epoch=1)
    assert (await dump(pg))["archive"] == []
    out = await pg.apply_batch(p, entries, expected=None, epoch=1)  # the pool replaced the connection
    assert out.applied == 2


async def test_connection_lost_mid_batch_writes_nothing(
    pg: PostgresReadModel, log: EventLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    await log.append([created("s1", "u1")])
    await log.append([added("s1", msg("user", "a"))])
    ((p, entries),) = (await entries_of(log)).items()
    real_add = apply_module.Changes.add
    calls = 0

    def add_then_die(self: Any, *args: Any, **kw: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:  # after round trip 1 (the checkpoint is locked), before the writes
            terminate(pg)
        real_add(self, *args, **kw)

    monkeypatch.setattr(apply_module.Changes, "add", add_then_die)
    with pytest.raises(ReadModelUnavailable):
        await pg.apply_batch(p, entries, expected=None, epoch=1)
    monkeypatch.setattr(apply_module.Changes, "add", real_add)
    assert await dump(pg) == await dump(InMemoryReadModel())
    assert await pg.checkpoints() == {}
    await pg.apply_batch(p, entries, expected=None, epoch=1)
    assert (await pg.get_messages(T, "s1")).total == 1


async def test_concurrent_writers_of_one_partition(pg: PostgresReadModel, log: EventLog) -> None:
    await log.append([created("s1", "u1")])
    await log.append([added("s1", msg("user", "a"))])
    ((p, entries),) = (await entries_of(log)).items()
    results = await asyncio.gather(
        *(pg.apply_batch(p, entries, expected=None, epoch=1) for _ in range(2)), return_exceptions=True
    )
    assert sorted(type(r).__name__ for r in results) == ["BatchOutcome", "FencedOut"]
    assert (await pg.get_messages(T, "s1")).total == 1


async def test_concurrent_projections_over_the_same_tables(pg: PostgresReadModel, log: EventLog) -> None:
    await log.append([created("s1", "u1")])
    for i in range(5):
        await log.append([added("s1", msg("user", f"m{i}"))])
        await log.append([saved("u1", "k", i, session="s1")])
    ((p, entries),) = (await entries_of(log)).items()
    results = await asyncio.gather(
        *(pg.apply_batch(p, entries, expected=None, epoch=1, projection=f"proj{i}") for i in range(3))
    )
    assert sorted(r.applied for r in results) == [0, 0, len(entries)]
    assert (await pg.get_messages(T, "s1")).total == 5
    assert (await pg.get_memory(T, "u1", session_id="s1"))["k"].version == 5


async def test_fenced_epochs_across_writers(pg: PostgresReadModel, log: EventLog) -> None:
    await log.append([created("s1", "u1")])
    ((p, entries),) = (await entries_of(log)).items()
    await pg.apply_batch(p, [], expected=None, epoch=7)  # a new lease owner claims the partition
    with pytest.raises(FencedOut):
        await pg.apply_batch(p, entries, expected=None, epoch=6)
    with pytest.raises(FencedOut):
        await pg.dead_letter(p, entries[0], "x", attempts=1, expected=None, epoch=6)
    assert await pg.dead_letters() == []


async def test_latest_messages_use_the_key_whatever_the_size(pg: PostgresReadModel, log: EventLog) -> None:
    await log.append([created("s1", "u1")])
    for _ in range(20):
        await log.append([added("s1", *[msg("user", "x") for _ in range(50)])])
    await project(log, pg)
    page = await pg.get_messages(T, "s1", limit=20, order="desc")
    assert [m.seq for m in page.messages] == list(range(1000, 980, -1)) and page.total == 1000
    async with pg.pool.connection() as conn:
        await conn.execute(f"ANALYZE {pg.sql.q}.messages")
        plan = "\n".join(
            r[0]
            for r in await (
                await conn.execute("EXPLAIN " + pg.sql.messages + " DESC", [T, "s1", 981, 1000])
            ).fetchall()
        )
    # A range of 20 keys on the primary key: what it costs does not depend on the session's size.
    assert "messages_pkey" in plan and "seq >= " in plan and "seq <= " in plan, plan


async def test_the_guard_looks_the_archive_up_by_its_keys(pg: PostgresReadModel, log: EventLog) -> None:
    await log.append([created("s1", "u1")])
    for i in range(5):
        await log.append([added("s1", msg("user", f"m{i}"))])
    await project(log, pg)
    ((_, entries),) = (await entries_of(log)).items()
    events = [decode(e) for e in entries]
    async with pg.pool.connection() as conn:
        await conn.execute(f"ANALYZE {pg.sql.q}.event_archive")
        await conn.execute("SET enable_seqscan = off")  # whatever the table's size: index or nothing
        try:
            params = [_version_ranges(entries, events)]
            cur = await conn.execute("EXPLAIN " + pg.sql.guard_lookup, params)
            plan = "\n".join(r[0] for r in await cur.fetchall())
        finally:
            await conn.execute("RESET enable_seqscan")
    # A search of the archive's unique (aggregate, version) key: the cost does not grow with the archive.
    assert "Seq Scan on event_archive" not in plan, plan
    assert store.GUARD_CONSTRAINT in plan, plan


async def test_open_read_model_by_settings(pg_schema: str) -> None:
    rm: ReadModel = await open_read_model(ReadModelSettings(storage="postgres", dsn=PG_DSN, schema=pg_schema))
    try:
        assert isinstance(rm, PostgresReadModel) and rm.schema == pg_schema
        assert await rm.checkpoints() == {}
    finally:
        await rm.close()  # type: ignore[attr-defined]
    assert isinstance(await open_read_model(ReadModelSettings()), InMemoryReadModel)


def test_settings_from_env() -> None:
    from events.errors import ConfigurationError

    s = ReadModelSettings.from_env(
        {
            "SESSION_STORAGE": "postgres",
            "DB_CONNECTION_STRING": "postgresql://x/y",
            "SESSIONS_DB_SCHEMA": "rm",
            "SESSIONS_DB_POOL_MAX": "3",
        }
    )
    assert (s.storage, s.dsn, s.schema, s.pool_min, s.pool_max) == (
        "postgres",
        "postgresql://x/y",
        "rm",
        1,
        3,
    )
    assert ReadModelSettings.from_env({}).storage == "memory"
    with pytest.raises(ConfigurationError):
        ReadModelSettings.from_env({"SESSION_STORAGE": "postgres"})
    with pytest.raises(ConfigurationError):
        ReadModelSettings.from_env({"SESSION_STORAGE": "mysql"})
    with pytest.raises(ConfigurationError):
        ReadModelSettings.from_env({"SESSIONS_DB_SCHEMA": "Bad-Name"})
    with pytest.raises(ConfigurationError):
        ReadModelSettings.from_env({"SESSIONS_DB_POOL_MAX": "many"})

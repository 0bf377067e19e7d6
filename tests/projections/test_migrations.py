"""The migration runner: idempotent, safe when starters race, never loses data, refuses edited history."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from projections import migrations as mig
from projections.errors import MigrationError
from projections.migrations import Migration, migrate
from projections.postgres import PostgresReadModel
from projections.settings import ReadModelSettings
from projections.settings import migrate as migrate_settings
from tests.fix_pg import PG_DSN

TABLES = {
    "sessions",
    "messages",
    "memories",
    "event_archive",
    "checkpoints",
    "dead_letters",
    "data_keys",
    "schema_migrations",
}


def tables(schema: str) -> set[str]:
    with psycopg.connect(PG_DSN) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", [schema]).fetchall()
    return {r[0] for r in rows}


def applied(schema: str) -> list[int]:
    with psycopg.connect(PG_DSN) as conn:
        return [r[0] for r in conn.execute(f'SELECT version FROM "{schema}".schema_migrations ORDER BY 1')]


async def test_migrate_is_idempotent(pg_schema: str) -> None:
    shipped = [m.version for m in mig.migrations()]
    assert shipped and shipped[0] == 1
    assert await migrate(PG_DSN, pg_schema) == shipped
    assert tables(pg_schema) == TABLES
    assert await migrate(PG_DSN, pg_schema) == []
    assert applied(pg_schema) == shipped


async def test_concurrent_starters_do_not_race(pg_schema: str) -> None:
    schema = f"{pg_schema}__new"  # does not exist yet: the runner creates it, once
    results = await asyncio.gather(*(migrate(PG_DSN, schema) for _ in range(6)))
    assert sorted(results, key=len)[-1] == [m.version for m in mig.migrations()]
    assert sum(len(r) for r in results) == len(mig.migrations())  # each applied exactly once
    assert tables(schema) == TABLES


async def test_an_upgrade_keeps_the_data(pg_schema: str, monkeypatch: pytest.MonkeyPatch) -> None:
    await migrate(PG_DSN, pg_schema)
    with psycopg.connect(PG_DSN) as conn:
        conn.execute(
            f'INSERT INTO "{pg_schema}".memories VALUES (%s, %s, %s, %s, %s, 1, now(), now())',
            ["t", "u", "", "k", '"v"'],
        )
    later = Migration(9999, "add_a_column", "ALTER TABLE memories ADD COLUMN note text NOT NULL DEFAULT 'x';")
    shipped = mig.migrations()
    monkeypatch.setattr(mig, "migrations", lambda: [*shipped, later])
    assert await migrate(PG_DSN, pg_schema) == [9999]
    with psycopg.connect(PG_DSN) as conn:
        assert conn.execute(f'SELECT key, value, note FROM "{pg_schema}".memories').fetchall() == [
            ("k", "v", "x")
        ]


async def test_an_edited_migration_is_refused(pg_schema: str, monkeypatch: pytest.MonkeyPatch) -> None:
    await migrate(PG_DSN, pg_schema)
    first, *rest = mig.migrations()
    edited = Migration(first.version, first.name, first.sql + "\n-- edited\n")
    monkeypatch.setattr(mig, "migrations", lambda: [edited, *rest])
    with pytest.raises(MigrationError, match="edited"):
        await migrate(PG_DSN, pg_schema)


async def test_a_failing_migration_leaves_nothing(pg_schema: str, monkeypatch: pytest.MonkeyPatch) -> None:
    await migrate(PG_DSN, pg_schema)
    bad = Migration(9998, "broken", "CREATE TABLE half (x int); SELECT no_such_function();")
    shipped = mig.migrations()
    monkeypatch.setattr(mig, "migrations", lambda: [*shipped, bad])
    with pytest.raises(MigrationError, match="9998_broken"):
        await migrate(PG_DSN, pg_schema)
    assert "half" not in tables(pg_schema)
    assert 9998 not in applied(pg_schema)


async def test_migrate_through_a_pool_and_by_settings(pg_schema: str) -> None:
    rm = await PostgresReadModel.open(PG_DSN, pg_schema)  # opening migrates
    try:
        assert await migrate(rm.pool, pg_schema) == []
        async with rm.pool.connection() as conn:
            assert conn.autocommit  # handed back as it was lent
    finally:
        await rm.close()
    settings = ReadModelSettings(storage="postgres", dsn=PG_DSN, schema=pg_schema)
    assert await migrate_settings(settings) == []
    assert await migrate_settings(ReadModelSettings()) == []


def test_schema_names_are_checked() -> None:
    with pytest.raises(ValueError):
        mig.check_schema_name('x"; DROP TABLE y; --')
    assert mig.lock_key("a") != mig.lock_key("b")

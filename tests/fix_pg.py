"""PostgreSQL fixtures: the real server (127.0.0.1:5432, database ``test`` by default), one schema per test.

A run where PostgreSQL is unreachable fails loudly with the command that starts it; it never skips.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
import pytest

PG_DSN = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
START_PG = 'pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start'


def check_pg() -> None:
    try:
        with psycopg.connect(PG_DSN, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as e:
        pytest.fail(f"PostgreSQL at {PG_DSN} is unreachable ({e}); start it with:\n  {START_PG}")


def drop_schemas(schema: str) -> None:
    """Drop the schema and the ones derived from it (a rebuild's ``<schema>__rebuild``, ...)."""
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname = %s OR nspname LIKE %s",
            [schema, schema.replace("_", r"\_") + r"\_\_%"],
        ).fetchall()
        for (name,) in rows:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A fresh, empty schema; dropped afterwards (with any ``<schema>__*`` schema a test derived from it)."""
    check_pg()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    yield schema
    drop_schemas(schema)


@pytest.fixture
def pg_dsn(pg_schema: str) -> str:
    """A DSN whose connections use the test's own schema."""
    sep = "&" if "?" in PG_DSN else "?"
    return f"{PG_DSN}{sep}options=-csearch_path%3D{pg_schema}"


@pytest.fixture
async def pg_read_model(pg_schema: str) -> AsyncIterator[Any]:
    """A ``projections.postgres.PostgresReadModel`` on the test's schema, migrated, with its own pool."""
    from projections.postgres import PostgresReadModel

    rm = await PostgresReadModel.open(PG_DSN, pg_schema, min_size=1, max_size=4)
    yield rm
    await rm.close()


@pytest.fixture(params=["memory", "postgres"])
async def read_model(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """A read model of each backend: the in-memory one, and PostgreSQL on the test's own schema (a module or
    class that needs another kind defines its own ``read_model``)."""
    from projections.memory import InMemoryReadModel
    from projections.postgres import PostgresReadModel

    if request.param == "memory":
        yield InMemoryReadModel()
        return
    rm = await PostgresReadModel.open(PG_DSN, request.getfixturevalue("pg_schema"), min_size=1, max_size=2)
    try:
        yield rm
    finally:
        await rm.close()

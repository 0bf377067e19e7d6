"""Numbered SQL migrations of the read models, and the runner.

Migrations are the files ``NNNN_name.sql`` beside this module, applied in order, each in its own transaction
with ``search_path`` set to the target schema (so the SQL names tables without a schema). The runner:

* takes a PostgreSQL advisory lock per schema (a session lock, held across the migrations), so concurrent
  starters never race: the second waits, then finds nothing left to do;
* records each applied migration in ``schema_migrations`` (version, name, checksum, applied_at), so running
  it again is a no-op;
* refuses to go on when an applied migration's file was edited afterwards (``MigrationError``): a change is
  a NEW migration. Migrations only ever add (tables, columns with defaults, indexes), drop an index no query
  needs, or move data forward in the same transaction; they never drop data, so an upgrade never loses any.

It runs when a read model opens (``projections.settings.open_read_model``) and by command::

    await migrate("postgresql://...", schema="public")     # or a psycopg_pool.AsyncConnectionPool
"""

from __future__ import annotations

import hashlib
import importlib.resources
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import psycopg
from psycopg_pool import AsyncConnectionPool

from ..driver import pg_errors
from ..errors import MigrationError, ReadModelError

__all__ = ["Migration", "check_schema_name", "lock_key", "migrate", "migrations"]

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_SCHEMA = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def migrations() -> list[Migration]:
    """Every migration shipped with the package, in order."""
    found = []
    for item in importlib.resources.files(__name__).iterdir():
        m = _FILE.match(item.name)
        if m:
            found.append(Migration(int(m.group(1)), m.group(2), item.read_text()))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migrations share a number: {versions}")
    return found


def check_schema_name(schema: str) -> str:
    """Schema names are interpolated into SQL, so only plain lowercase identifiers are accepted."""
    if not _SCHEMA.match(schema):
        raise ValueError(f"schema name {schema!r} must match {_SCHEMA.pattern}")
    return schema


def lock_key(schema: str) -> int:
    """The advisory lock of a schema's migrations (a signed 64-bit number, stable across versions)."""
    digest = hashlib.blake2b(f"sessions.migrations:{schema}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@asynccontextmanager
async def _connection(
    target: str | AsyncConnectionPool[psycopg.AsyncConnection[tuple[object, ...]]],
) -> AsyncIterator[psycopg.AsyncConnection[tuple[object, ...]]]:
    with pg_errors():  # PostgreSQL unreachable: ReadModelUnavailable
        if isinstance(target, str):
            async with await psycopg.AsyncConnection.connect(target, autocommit=True) as conn:
                yield conn
        else:
            async with target.connection() as conn:
                was = conn.autocommit
                if not was:
                    await conn.commit()
                    await conn.set_autocommit(True)
                try:
                    yield conn
                finally:
                    if not was and not conn.closed:
                        await conn.set_autocommit(False)


async def migrate(
    target: str | AsyncConnectionPool[psycopg.AsyncConnection[tuple[object, ...]]],
    schema: str = "public",
) -> list[int]:
    """Bring ``schema`` (created if missing) up to the latest migration. Returns the versions applied now."""
    s = check_schema_name(schema)
    wanted = migrations()
    applied_now: list[int] = []
    async with _connection(target) as conn:
        await conn.execute("SELECT pg_advisory_lock(%s)", [lock_key(s)])
        try:
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{s}"')
            await conn.execute(
                f'CREATE TABLE IF NOT EXISTS "{s}".schema_migrations ('
                " version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            cur = await conn.execute(f'SELECT version, checksum FROM "{s}".schema_migrations')
            done = {int(str(v)): str(c) for v, c in await cur.fetchall()}
            for m in wanted:
                if m.version in done:
                    if done[m.version] != m.checksum:
                        raise MigrationError(
                            f"migration {m.version:04d}_{m.name} was edited after it was applied to schema"
                            f" {s!r}; add a new migration instead",
                            version=m.version,
                        )
                    continue
                try:
                    with pg_errors():  # an outage stays ReadModelUnavailable; a refused statement:
                        async with conn.transaction():
                            await conn.execute(f'SET LOCAL search_path TO "{s}"')
                            await conn.execute(m.sql.encode())
                            await conn.execute(
                                f'INSERT INTO "{s}".schema_migrations (version, name, checksum)'
                                " VALUES (%s, %s, %s)",
                                [m.version, m.name, m.checksum],
                            )
                except ReadModelError as e:
                    raise MigrationError(
                        f"migration {m.version:04d}_{m.name} failed on schema {s!r}: {e}", version=m.version
                    ) from e
                applied_now.append(m.version)
        finally:
            if not conn.closed:
                await conn.execute("SELECT pg_advisory_unlock(%s)", [lock_key(s)])
    return applied_now

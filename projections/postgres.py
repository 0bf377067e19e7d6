"""The PostgreSQL read model: ``projections.api.ReadModel`` over a ``psycopg_pool.AsyncConnectionPool``.

Here: the pool, the queries, the rebuild support and the users' data keys. The write side (``apply_batch`` and
``dead_letter``, one transaction each, of a fixed number of round trips) is ``projections.postgres_batch``.

Errors (translated once, by ``projections.driver``): a connection that cannot be had or breaks raises
``ReadModelUnavailable`` (an ``Unavailable``: retry); the transaction is rolled back whole, so a batch is
never torn. If the COMMIT's reply is what was lost, the retry finds the checkpoint moved and gets
``FencedOut``, and the projector reloads the checkpoint.

Bounds: a query (connection wait included) answers within ``query_timeout_s`` and a write (a batch, a dead
letter, a rebuild's step) within ``write_timeout_s``, or raises ``ReadModelUnavailable``, whatever the server
does (stopped, frozen); ``statement_timeout`` on every connection is the write bound.

Connections are autocommit (a read is one round trip, with no BEGIN/COMMIT); writes open a transaction.
JSON columns are decoded once, by psycopg, with msgspec.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import psycopg
from psycopg.types.json import set_json_loads
from psycopg.types.string import BytesBinaryDumper
from psycopg_pool import AsyncConnectionPool

from events.codec import RawEntry

from . import store
from .api import (
    PROJECTION,
    AuditFilter,
    AuditPage,
    BatchOutcome,
    CatchUp,
    Checkpoint,
    DeadLetter,
    MemoryRecord,
    MessagePage,
    Order,
    ReadModel,
    SessionPage,
    SessionRecord,
    position_key,
)
from .apply import USER_SCOPE, check_batch, decode
from .driver import Deadline, pg_errors
from .errors import AlreadyApplied, ReadModelError
from .migrations import migrate, migrations
from .paging import audit_cursor, from_us, message_window, parse_session_cursor, session_cursor
from .postgres_batch import Conn, write_batch, write_dead_letter
from .store import Statements

__all__ = ["QUERY_TIMEOUT_S", "WRITE_TIMEOUT_S", "Conn", "Pool", "PostgresReadModel", "configure_connection"]

Pool = AsyncConnectionPool[Conn]

QUERY_TIMEOUT_S = 2.0  # a read, the wait for a connection included
WRITE_TIMEOUT_S = 30.0  # a batch, a dead letter, a rebuild's step; also the statement_timeout


async def configure_connection(conn: Conn) -> None:
    """Per connection of the pool: JSON decoded by msgspec, times in UTC."""
    set_json_loads(msgspec.json.decode, conn)
    # The binary COPYs write prepared bytes through the "bytea" dumper: the C one (by default bytea maps to
    # a Python subclass that also accepts the DB-API ``Binary`` wrapper, which this code never passes).
    conn.adapters.register_dumper(bytes, BytesBinaryDumper)
    await conn.execute("SET TIME ZONE 'UTC'")


def _configure(statement_timeout_s: float) -> Callable[[Conn], Awaitable[None]]:
    async def configure(conn: Conn) -> None:
        await configure_connection(conn)
        await conn.execute(f"SET statement_timeout = {max(1, int(statement_timeout_s * 1000))}")

    return configure


class PostgresReadModel(ReadModel):
    """The read model in one PostgreSQL schema (migrated: see ``projections.migrations.migrate``)."""

    def __init__(
        self,
        pool: Pool,
        schema: str = "public",
        *,
        owns_pool: bool = False,
        query_timeout_s: float = QUERY_TIMEOUT_S,
        write_timeout_s: float = WRITE_TIMEOUT_S,
    ) -> None:
        self.pool = pool
        self.schema = schema
        self.sql = Statements(schema)
        self._owns_pool = owns_pool
        self.query_timeout_s = query_timeout_s
        self.write_timeout_s = write_timeout_s

    @classmethod
    async def open(
        cls,
        conninfo: str,
        schema: str = "public",
        *,
        min_size: int = 1,
        max_size: int = 10,
        timeout: float = 10.0,
        run_migrations: bool = True,
        query_timeout_s: float = QUERY_TIMEOUT_S,
        write_timeout_s: float = WRITE_TIMEOUT_S,
    ) -> PostgresReadModel:
        """A pool of its own (closed by ``close``), with the schema migrated first. ``timeout``: how long
        opening waits for the first connections."""
        pool: Pool = AsyncConnectionPool(
            conninfo,
            min_size=min_size,
            max_size=max_size,
            timeout=timeout,
            kwargs={"autocommit": True},
            configure=_configure(write_timeout_s),
            open=False,
        )
        try:
            with pg_errors():
                # One connection first: a wrong host, port, database, user or password fails now, with the
                # server's reason, instead of the pool retrying it quietly until its timeout (a host that
                # does not answer at all: within 2 to 5 s, libpq's connect_timeout).
                probe = await psycopg.AsyncConnection.connect(
                    conninfo, connect_timeout=max(2, min(5, round(timeout)))
                )
                await probe.close()
                await pool.open(wait=True, timeout=timeout)
            if run_migrations:
                await migrate(pool, schema)
        except BaseException:
            await pool.close()
            raise
        return cls(
            pool, schema, owns_pool=True, query_timeout_s=query_timeout_s, write_timeout_s=write_timeout_s
        )

    async def close(self) -> None:
        if self._owns_pool:
            await self.pool.close()

    async def pending_migrations(self) -> list[int]:
        """The shipped migrations this schema has not applied (all of them if it was never migrated), within
        the query bound (readiness)."""
        async with self._conn() as conn:
            row = await (await conn.execute(self.sql.has_migrations)).fetchone()
            rows = (
                await (await conn.execute(self.sql.applied_migrations)).fetchall() if row and row[0] else []
            )
        applied = {int(r[0]) for r in rows}
        return [m.version for m in migrations() if m.version not in applied]

    @asynccontextmanager
    async def _conn(self, timeout_s: float | None = None) -> AsyncIterator[Conn]:
        """A connection for statements that end within ``timeout_s`` (default: ``query_timeout_s``), the
        wait for the connection included; driver failures become ``projections.errors`` (``driver``)."""
        bound = self.query_timeout_s if timeout_s is None else timeout_s
        with Deadline(bound) as deadline, pg_errors(deadline):
            async with self.pool.connection(timeout=deadline.remaining_s) as conn:
                deadline.watch(conn)
                try:
                    yield conn
                finally:
                    deadline.watch(None)  # back in the pool, a connection is no longer ours to cut

    # -- queries ---------------------------------------------------------------------------------------
    async def get_session(self, tenant: str, session_id: str) -> SessionRecord | None:
        async with self._conn() as conn:
            row = await (await conn.execute(self.sql.get_session, [tenant, session_id])).fetchone()
        return store.session_record(row) if row else None

    async def list_sessions(
        self, tenant: str, user_id: str, *, limit: int = 50, after: str | None = None
    ) -> SessionPage:
        params: list[Any]
        if after is None:
            query, params = self.sql.list_sessions, [tenant, user_id]
        else:
            us, sid = parse_session_cursor(after)
            query, params = self.sql.list_sessions_after, [tenant, user_id, from_us(us), sid]
        query += " ORDER BY updated_at DESC, session_id DESC"
        if limit > 0:
            query += " LIMIT %s"
            params.append(limit + 1)
        async with self._conn() as conn:
            rows = await (await conn.execute(query, params)).fetchall()
        sessions = [store.session_record(r) for r in rows]
        more = limit > 0 and len(sessions) > limit
        sessions = sessions[:limit] if limit > 0 else sessions
        last = sessions[-1] if more else None
        return SessionPage(
            sessions=sessions,
            next_cursor=session_cursor(last.updated_at, last.session_id) if last else None,
        )

    async def get_messages(
        self,
        tenant: str,
        session_id: str,
        *,
        limit: int | None = None,
        offset: int | None = None,
        order: Order = "asc",
        after: str | None = None,
        before: str | None = None,
    ) -> MessagePage:
        async with self._conn() as conn:
            row = await (await conn.execute(self.sql.message_count, [tenant, session_id])).fetchone()
            count = 0 if row is None or row[1] else int(row[0])
            w = message_window(count, limit=limit, offset=offset, order=order, after=after, before=before)
            if w.empty:
                return MessagePage(messages=[], total=count)
            query = self.sql.messages + (" DESC" if w.descending else "")
            rows = await (await conn.execute(query, [tenant, session_id, w.first, w.last])).fetchall()
        return MessagePage(
            messages=[store.message_record(r) for r in rows], total=count, next_cursor=w.next_cursor
        )

    async def get_memory(
        self,
        tenant: str,
        user_id: str,
        *,
        session_id: str | None = None,
        merged: bool = False,
        key: str | None = None,
    ) -> dict[str, MemoryRecord]:
        scopes = [USER_SCOPE] if session_id is None else [USER_SCOPE, session_id] if merged else [session_id]
        query, params = self.sql.memory, [tenant, user_id, scopes]
        if key is not None:
            query += " AND key = %s"
            params.append(key)
        async with self._conn() as conn:
            rows = await (await conn.execute(query, params)).fetchall()
        out: dict[str, MemoryRecord] = {}
        for scope in scopes:  # the session scope last: it wins
            for r in rows:
                if r[0] == scope:
                    out[r[1]] = store.memory_record(user_id, r)
        return dict(sorted(out.items()))

    async def audit(self, flt: AuditFilter, *, limit: int = 100, after: str | None = None) -> AuditPage:
        where, params = store.audit_where(flt, after)
        query = f"SELECT {store.AUDIT_COLUMNS} FROM {self.sql.q}.event_archive WHERE {where}"
        query += " ORDER BY pos_ms, partition, pos_seq"
        if limit > 0:
            query += " LIMIT %s"
            params.append(limit + 1)
        async with self._conn() as conn:
            rows = await (await conn.execute(query, params)).fetchall()
        more = limit > 0 and len(rows) > limit
        rows = rows[:limit] if limit > 0 else rows
        cursor = audit_cursor((rows[-1][1], rows[-1][0], rows[-1][2])) if more else None
        return AuditPage(events=[store.audit_record(r) for r in rows], next_cursor=cursor)

    async def checkpoints(self, projection: str = PROJECTION) -> dict[int, Checkpoint]:
        async with self._conn() as conn:
            rows = await (await conn.execute(self.sql.checkpoints, [projection])).fetchall()
        return {r[0]: store.checkpoint(r) for r in rows}

    async def dead_letters(self, *, limit: int = 100, include_retried: bool = False) -> list[DeadLetter]:
        query = self.sql.dead_letters + ("" if include_retried else " WHERE NOT retried") + " ORDER BY id"
        params: list[Any] = []
        if limit > 0:
            query += " LIMIT %s"
            params.append(limit)
        async with self._conn() as conn:
            rows = await (await conn.execute(query, params)).fetchall()
        return [store.dead_letter(r) for r in rows]

    # -- write side (projections.postgres_batch) -------------------------------------------------------
    async def apply_batch(
        self,
        partition: int,
        entries: Sequence[RawEntry],
        *,
        expected: str | None,
        epoch: int,
        projection: str = PROJECTION,
    ) -> BatchOutcome:
        check_batch(partition, entries, expected)
        events = [decode(e) for e in entries]  # poison is found before any I/O
        try:
            async with self._conn(self.write_timeout_s) as conn:
                return await write_batch(
                    conn,
                    self.sql,
                    partition,
                    entries,
                    events,
                    expected=expected,
                    epoch=epoch,
                    projection=projection,
                )
        except AlreadyApplied as e:
            # Cannot happen while writers hold the partition lock and look the guard up first; if it does,
            # the rows are not what the checkpoint says: refuse, write nothing.
            raise AlreadyApplied(f"partition {partition}: {e.message}", partition=partition) from e.__cause__

    async def dead_letter(
        self,
        partition: int,
        entry: RawEntry,
        error: str,
        *,
        attempts: int,
        expected: str | None,
        epoch: int,
        projection: str = PROJECTION,
    ) -> str:
        check_batch(partition, [entry], expected)
        async with self._conn(self.write_timeout_s) as conn:
            await write_dead_letter(
                conn,
                self.sql,
                partition,
                entry,
                error,
                attempts=attempts,
                expected=expected,
                epoch=epoch,
                projection=projection,
            )
        return entry.position

    # -- rebuild support (projections.rebuild) ---------------------------------------------------------
    async def replay(self, partition: int, after: str | None, limit: int) -> list[RawEntry]:
        """What this read model holds of a partition after ``after``, in order: its archived events and its
        (not retried) dead letters, as the stream entries they came from."""
        ms, seq = position_key(after)
        async with self._conn(self.write_timeout_s) as conn:
            rows = await (
                await conn.execute(self.sql.replay, {"p": partition, "ms": ms, "seq": seq, "n": limit})
            ).fetchall()
        return [RawEntry(partition, f"{r[0]}-{r[1]}", r[2], int(r[3]), bytes(r[4])) for r in rows]

    async def replay_size(self) -> int:
        async with self._conn(self.write_timeout_s) as conn:
            row = await (await conn.execute(self.sql.replay_size)).fetchone()
        return int(row[0]) if row else 0

    def shadow_schema(self) -> str:
        return f"{self.schema[:54]}__rebuild"

    async def open_shadow(self, *, fresh: bool = False) -> PostgresReadModel:
        """A read model in the shadow schema (``<schema>__rebuild``), migrated, sharing this pool. An
        unfinished rebuild's shadow is kept (its checkpoints are the rebuild's progress) unless ``fresh``."""
        shadow = self.shadow_schema()
        if fresh:
            async with self._conn(self.write_timeout_s) as conn:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{shadow}" CASCADE')
        await migrate(self.pool, shadow)
        return PostgresReadModel(
            self.pool, shadow, query_timeout_s=self.query_timeout_s, write_timeout_s=self.write_timeout_s
        )

    async def switch_to(
        self, shadow: ReadModel, projection: str = PROJECTION, *, catch_up: CatchUp | None = None
    ) -> None:
        """In ONE transaction (see ``ReadModel.switch_to``): lock the live checkpoints against writers (a
        batch's first statement waits; reads go on), let ``catch_up`` bring the shadow up to them (through
        other connections of the pool: it needs two at least), carry the live checkpoints' epochs over, swap
        the schemas by renaming them, and drop the old one. Statements waiting on the old tables re-resolve
        the names and continue on the new ones, which hold at least what the old ones held."""
        if not isinstance(shadow, PostgresReadModel) or shadow.schema != self.shadow_schema():
            raise ValueError("switch_to takes the shadow that open_shadow returned")
        if catch_up is not None and self.pool.max_size < 2:
            # The catch-up would wait for a connection this switch holds, until the pool times out.
            raise ReadModelError(
                "a rebuild's switch needs a pool of 2 connections at least (SESSIONS_DB_POOL_MAX)"
            )
        live, new = self.sql.q, shadow.sql.q
        old = f'"{self.schema[:50]}__replaced"'
        async with self._conn(self.write_timeout_s) as conn, conn.transaction():
            await conn.execute(f"LOCK TABLE {live}.checkpoints IN EXCLUSIVE MODE")
            if catch_up is not None:
                rows = await (await conn.execute(self.sql.checkpoints, [projection])).fetchall()
                await catch_up({r[0]: store.checkpoint(r) for r in rows})
            await conn.execute(
                f"INSERT INTO {new}.checkpoints (projection, partition, pos_ms, pos_seq, epoch, updated_at)"
                " SELECT projection, partition,"
                " CASE WHEN projection = %s THEN NULL ELSE pos_ms END,"
                " CASE WHEN projection = %s THEN NULL ELSE pos_seq END, epoch, now()"
                f" FROM {live}.checkpoints"
                " ON CONFLICT (projection, partition) DO UPDATE"
                " SET epoch = GREATEST(checkpoints.epoch, EXCLUDED.epoch)",
                [projection, projection],
            )
            # The data keys are no projection of the log: they move over as they are (locked, so no key is
            # created or destroyed in between).
            await conn.execute(f"LOCK TABLE {live}.data_keys IN EXCLUSIVE MODE")
            await conn.execute(
                f"INSERT INTO {new}.data_keys SELECT * FROM {live}.data_keys ON CONFLICT DO NOTHING"
            )
            await conn.execute(f"DROP SCHEMA IF EXISTS {old} CASCADE")
            await conn.execute(f"ALTER SCHEMA {live} RENAME TO {old}")
            await conn.execute(f"ALTER SCHEMA {new} RENAME TO {live}")
            await conn.execute(f"DROP SCHEMA {old} CASCADE")

    # -- the users' wrapped data keys (service.keyring.KeyStore) -----------------------------------------
    async def load_data_key(self, tenant: str, user_id: str) -> tuple[str, bytes] | None:
        async with self._conn() as conn:
            cur = await conn.execute(
                f"SELECT key_id, wrapped FROM {self.sql.q}.data_keys WHERE tenant = %s AND user_id = %s",
                [tenant, user_id],
            )
            row = await cur.fetchone()
        return None if row is None else (str(row[0]), bytes(row[1]))

    async def save_data_key(
        self, tenant: str, user_id: str, key_id: str, wrapped: bytes
    ) -> tuple[str, bytes]:
        """Store the key unless the user has one; returns the one stored (a racing writer's, maybe)."""
        q = self.sql.q
        async with self._conn() as conn:
            # A racing insert that commits while this one waits on it is invisible to this statement's
            # snapshot: nothing inserted, nothing seen. The next statement (a new snapshot) sees it.
            for _ in range(3):
                cur = await conn.execute(
                    f"WITH ins AS (INSERT INTO {q}.data_keys (tenant, user_id, key_id, wrapped)"
                    " VALUES (%s, %s, %s, %s) ON CONFLICT (tenant, user_id) DO NOTHING"
                    " RETURNING key_id, wrapped)"
                    f" SELECT key_id, wrapped FROM ins UNION ALL SELECT key_id, wrapped FROM {q}.data_keys"
                    " WHERE tenant = %s AND user_id = %s LIMIT 1",
                    [tenant, user_id, key_id, wrapped, tenant, user_id],
                )
                row = await cur.fetchone()
                if row is not None:
                    return str(row[0]), bytes(row[1])
        raise ReadModelError(f"the data key of user {user_id} could not be stored or read; retry")

    async def delete_data_key(self, tenant: str, user_id: str) -> bool:
        async with self._conn() as conn:
            cur = await conn.execute(
                f"DELETE FROM {self.sql.q}.data_keys WHERE tenant = %s AND user_id = %s", [tenant, user_id]
            )
            return cur.rowcount > 0

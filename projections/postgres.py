"""The PostgreSQL read model: ``projections.api.ReadModel`` over a ``psycopg_pool.AsyncConnectionPool``.

Write side. ``apply_batch`` is ONE transaction of a fixed number of round trips, whatever the batch size:

1. (pipelined) make sure the checkpoint row exists and lock it; load the sessions and memory keys the batch
   touches;
2. check the compare-and-set (position and epoch) in Python, then fold the batch over the loaded state with
   the pure ``projections.apply.Changes`` (a poison entry raises here: nothing was written);
3. (pipelined) purge, clear, delete, upsert memories and sessions with one array statement each, and move the
   checkpoint with a conditional UPDATE (the compare-and-set stated in SQL);
4. COPY the messages and the archive rows; COMMIT.

Round trip 1 first takes a transaction advisory lock on (schema, partition): the rows of a partition's
aggregates are only written by that partition's batches, so this serializes every writer of them, whatever
projection name it checkpoints under. The (aggregate, version) guard is the second line behind the
compare-and-set: round trip 1 also looks the batch's aggregate versions up in the archive; entries already
applied (the same event at the same version: a checkpoint behind its data) are skipped
(``BatchOutcome.skipped``), and another event at an applied version is ``PoisonEvent``. The archive's UNIQUE
(aggregate, version) constraint stands behind that (``AlreadyApplied``). An event id is not unique in the
archive: the log dedups it per partition for a window only (migration 0003).

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

import contextlib
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import psycopg
from psycopg.types.json import set_json_loads
from psycopg.types.string import BytesBinaryDumper
from psycopg_pool import AsyncConnectionPool

from events.codec import RawEntry
from events.schema import AnyEvent, MemorySaved

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
from .apply import USER_SCOPE, Changes, MemoryKey, SessionKey, check_batch, check_checkpoint, decode, guard
from .driver import UNWRITABLE, Deadline, pg_errors
from .errors import AlreadyApplied, FencedOut, ReadModelError, UnwritableBatch
from .migrations import migrate, migrations
from .paging import audit_cursor, from_us, message_window, parse_session_cursor, session_cursor
from .store import Statements

__all__ = ["QUERY_TIMEOUT_S", "WRITE_TIMEOUT_S", "Conn", "Pool", "PostgresReadModel", "configure_connection"]

Conn = psycopg.AsyncConnection[tuple[Any, ...]]
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


class _Loaded:
    """The state a batch reads (``projections.apply.State``), loaded in its first round trip."""

    def __init__(self) -> None:
        self.sessions: dict[SessionKey, SessionRecord] = {}
        self.memories: dict[MemoryKey, MemoryRecord] = {}

    def session(self, key: SessionKey) -> SessionRecord | None:
        return self.sessions.get(key)

    def memory(self, key: MemoryKey) -> MemoryRecord | None:
        return self.memories.get(key)


async def _rollback(conn: Conn) -> None:
    """End a failed batch's transaction, so the connection goes back to the pool idle. A broken connection
    is left as it is: the pool discards it."""
    if conn.closed or conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
        return
    with contextlib.suppress(psycopg.Error):
        await conn.rollback()


def _split(position: str | None) -> tuple[int | None, int | None]:
    """A position as the two columns; the start (None, "", "0-0") is NULL."""
    if not position or position_key(position) == (0, 0):
        return (None, None)
    return store.split_position(position)


def _version_ranges(entries: Sequence[RawEntry], events: Sequence[AnyEvent]) -> str:
    """Per aggregate of the batch: (tenant, kind, id, lowest version, highest version)."""
    ranges: dict[tuple[str, str, str], list[int]] = {}
    for e, ev in zip(entries, events, strict=True):
        key = (ev.tenant, ev.aggregate_kind, ev.aggregate_id)
        r = ranges.get(key)
        if r is None:
            ranges[key] = [e.version, e.version]
        elif e.version < r[0]:
            r[0] = e.version
        elif e.version > r[1]:
            r[1] = e.version
    return store.json_rows([(*k, lo, hi) for k, (lo, hi) in ranges.items()])


def _touched(events: Sequence[AnyEvent]) -> tuple[list[SessionKey], list[MemoryKey]]:
    sessions: dict[SessionKey, None] = {}
    memories: dict[MemoryKey, None] = {}
    for ev in events:
        if ev.aggregate_kind == "session":
            sessions[(ev.tenant, ev.aggregate_id)] = None
        if isinstance(ev, MemorySaved):
            p = ev.payload
            if p.session_id is not None:
                sessions[(ev.tenant, p.session_id)] = None
            memories[(ev.tenant, p.user_id, p.session_id or USER_SCOPE, p.key)] = None
    return list(sessions), list(memories)


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

    def _partition_lock(self, partition: int) -> int:
        """The advisory lock of a partition's rows in this schema. Every aggregate lives in one partition, so
        the rows a batch touches are only ever touched by batches of that partition: holding this lock
        serializes all their writers (whatever projection name they use), and the guard lookup that follows
        sees everything committed before."""
        digest = hashlib.blake2b(f"sessions.apply:{self.schema}:{partition}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big", signed=True)

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

    # -- write side ------------------------------------------------------------------------------------
    async def _lock_checkpoint(
        self, conn: Conn, projection: str, partition: int, expected: str | None, epoch: int
    ) -> None:
        """Lock the checkpoint row (created if missing) and check the compare-and-set."""
        await conn.execute(self.sql.checkpoint_row, [projection, partition])
        cur = await conn.execute(self.sql.lock_checkpoint, [projection, partition])
        self._check_cas(await cur.fetchone(), partition, expected, epoch)

    @staticmethod
    def _check_cas(row: tuple[Any, ...] | None, partition: int, expected: str | None, epoch: int) -> None:
        assert row is not None  # the row was inserted (if missing) just before
        check_checkpoint(partition, store.position_str(row[0], row[1]), int(row[2]), expected, epoch)

    async def _move_checkpoint(
        self,
        conn: Conn,
        projection: str,
        partition: int,
        expected: str | None,
        position: str | None,
        epoch: int,
    ) -> psycopg.AsyncCursor[tuple[Any, ...]]:
        """The compare-and-set UPDATE; check its result with ``_moved`` (after the pipeline's sync)."""
        new = _split(position)
        return await conn.execute(
            self.sql.move_checkpoint, [*new, epoch, projection, partition, epoch, *_split(expected)]
        )

    @staticmethod
    def _moved(cur: psycopg.AsyncCursor[tuple[Any, ...]], partition: int) -> None:
        if cur.rowcount != 1:  # cannot happen while the row is locked; stated for the reader
            raise FencedOut(f"the checkpoint of partition {partition} moved", partition=partition)

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
            return await self._apply(partition, entries, events, expected, epoch, projection)
        except AlreadyApplied as e:
            # Cannot happen while writers hold the partition lock and look the guard up first; if it does,
            # the rows are not what the checkpoint says: refuse, write nothing.
            raise AlreadyApplied(f"partition {partition}: {e.message}", partition=partition) from e.__cause__

    async def _apply(
        self,
        partition: int,
        entries: Sequence[RawEntry],
        events: Sequence[AnyEvent],
        expected: str | None,
        epoch: int,
        projection: str,
    ) -> BatchOutcome:
        async with self._conn(self.write_timeout_s) as conn:
            try:
                return await self._write(conn, partition, entries, events, expected, epoch, projection)
            except UNWRITABLE as e:
                # Decoded and applied, yet refused by the database or the driver: poison, not an outage; the
                # projector isolates the entry and dead-letters it instead of stopping.
                await _rollback(conn)
                raise UnwritableBatch(partition, entries, f"{type(e).__name__}: {e}") from e
            except BaseException:
                await _rollback(conn)
                raise

    async def _write(
        self,
        conn: Conn,
        partition: int,
        entries: Sequence[RawEntry],
        events: Sequence[AnyEvent],
        expected: str | None,
        epoch: int,
        projection: str,
    ) -> BatchOutcome:
        """The batch's transaction, begun and committed here (the caller rolls back on any error): BEGIN
        goes in the first pipeline instead of a round trip of its own."""
        session_keys, memory_keys = _touched(events)
        sql = self.sql
        # Round trip 1: lock the partition and the checkpoint; load what the batch reads and the guard needs.
        loaded = _Loaded()
        async with conn.pipeline():
            await conn.execute("BEGIN")
            cp_cur = await conn.execute(
                sql.lock_batch, [projection, partition, self._partition_lock(partition)]
            )
            g_cur = None
            if entries:
                g_cur = await conn.execute(sql.guard_lookup, [_version_ranges(entries, events)])
            s_cur = m_cur = None
            if session_keys:
                s_cur = await conn.execute(sql.load_sessions, [store.json_rows(session_keys)])
            if memory_keys:
                m_cur = await conn.execute(sql.load_memories, [store.json_rows(memory_keys)])
        self._check_cas(await cp_cur.fetchone(), partition, expected, epoch)
        skip: set[int] = set()
        if g_cur is not None and (rows := await g_cur.fetchall()):
            applied = {(t, k, a, int(v)): eid for eid, t, k, a, v in rows}
            skip = guard(entries, events, applied.get)
        if s_cur is not None:
            for r in await s_cur.fetchall():
                rec = store.session_record(r)
                loaded.sessions[(rec.tenant, rec.session_id)] = rec
        if m_cur is not None:
            for r in await m_cur.fetchall():
                k, mem = store.memory_state(r)
                loaded.memories[k] = mem
        # The pure part: PoisonEvent from here rolls everything back.
        changes = Changes.fold(loaded, entries, events, skip)
        position = entries[-1].position if entries else expected
        # Round trip 2: the set-based writes and the checkpoint.
        upserts, deletes = store.memory_params(changes)
        async with conn.pipeline():
            if changes.purged:
                await conn.execute(sql.purge_messages, [store.json_rows(sorted(changes.purged))])
            if changes.cleared:
                await conn.execute(sql.clear_scopes, [store.json_rows(sorted(changes.cleared))])
            if changes.forgotten:  # user.forgotten (projections.apply, step 2)
                forgotten = store.json_rows(sorted(changes.forgotten))
                await conn.execute(sql.forget_memories, [forgotten])
                await conn.execute(sql.forget_sessions, [forgotten])
            if changes.erased:
                await conn.execute(sql.delete_sessions, [store.json_rows(sorted(changes.erased))])
            if deletes:
                await conn.execute(sql.delete_memories, [store.json_rows(deletes)])
            if upserts:
                await conn.execute(sql.upsert_memories, [store.json_rows(upserts)])
            if changes.sessions:
                await conn.execute(sql.upsert_sessions, [store.session_params(changes)])
            moved = await self._move_checkpoint(conn, projection, partition, expected, position, epoch)
        self._moved(moved, partition)
        # Then COPY the bulk rows (binary; each row formatted by psycopg's C code), and COMMIT.
        async with conn.cursor() as cur:
            if changes.messages:
                async with cur.copy(sql.copy_messages) as copy:
                    copy.set_types(store.MESSAGE_COPY_TYPES)
                    for row in store.message_rows(changes):
                        await copy.write_row(row)
            if changes.archive:
                async with cur.copy(sql.copy_archive) as copy:
                    copy.set_types(store.ARCHIVE_COPY_TYPES)
                    for row in store.archive_rows(changes.archive):
                        await copy.write_row(row)
        await conn.commit()
        return changes.outcome(position, len(skip))

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
        ms, seq = store.split_position(entry.position)
        async with self._conn(self.write_timeout_s) as conn, conn.transaction():
            await self._lock_checkpoint(conn, projection, partition, expected, epoch)
            await conn.execute(
                self.sql.insert_dead_letter,
                [projection, partition, ms, seq, entry.type, entry.version, entry.data, error, attempts],
            )
            moved = await self._move_checkpoint(conn, projection, partition, expected, entry.position, epoch)
            self._moved(moved, partition)
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

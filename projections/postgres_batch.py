"""The PostgreSQL write side of ``projections.postgres.PostgresReadModel``: a batch and a dead letter, each
ONE transaction on a connection the read model hands in (within its write bound).

``apply_batch`` is ONE transaction of a fixed number of round trips, whatever the batch size:

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

A failed transaction is rolled back here, so the connection goes back to the pool idle (errors are translated
by the caller's ``projections.driver.pg_errors``).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Sequence
from typing import Any

import psycopg

from events.codec import RawEntry
from events.schema import AnyEvent, MemorySaved

from . import store
from .api import BatchOutcome, MemoryRecord, SessionRecord, position_key
from .apply import USER_SCOPE, Changes, MemoryKey, SessionKey, check_checkpoint, guard
from .driver import UNWRITABLE
from .errors import FencedOut, UnwritableBatch
from .store import Statements

__all__ = ["Conn", "partition_lock", "write_batch", "write_dead_letter"]

Conn = psycopg.AsyncConnection[tuple[Any, ...]]


def partition_lock(schema: str, partition: int) -> int:
    """The advisory lock of a partition's rows in ``schema``. Every aggregate lives in one partition, so the
    rows a batch touches are only ever touched by batches of that partition: holding this lock serializes
    all their writers (whatever projection name they use), and the guard lookup that follows sees everything
    committed before."""
    digest = hashlib.blake2b(f"sessions.apply:{schema}:{partition}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


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


def _check_cas(row: tuple[Any, ...] | None, partition: int, expected: str | None, epoch: int) -> None:
    assert row is not None  # the row was inserted (if missing) just before
    check_checkpoint(partition, store.position_str(row[0], row[1]), int(row[2]), expected, epoch)


async def _move_checkpoint(
    conn: Conn,
    sql: Statements,
    projection: str,
    partition: int,
    expected: str | None,
    position: str | None,
    epoch: int,
) -> psycopg.AsyncCursor[tuple[Any, ...]]:
    """The compare-and-set UPDATE; check its result with ``_moved`` (after the pipeline's sync)."""
    new = _split(position)
    return await conn.execute(
        sql.move_checkpoint, [*new, epoch, projection, partition, epoch, *_split(expected)]
    )


def _moved(cur: psycopg.AsyncCursor[tuple[Any, ...]], partition: int) -> None:
    if cur.rowcount != 1:  # cannot happen while the row is locked; stated for the reader
        raise FencedOut(f"the checkpoint of partition {partition} moved", partition=partition)


async def write_batch(
    conn: Conn,
    sql: Statements,
    partition: int,
    entries: Sequence[RawEntry],
    events: Sequence[AnyEvent],
    *,
    expected: str | None,
    epoch: int,
    projection: str,
) -> BatchOutcome:
    """Apply a checked and decoded batch in one transaction (``ReadModel.apply_batch``), rolled back on any
    error."""
    try:
        return await _write(conn, sql, partition, entries, events, expected, epoch, projection)
    except UNWRITABLE as e:
        # Decoded and applied, yet refused by the database or the driver: poison, not an outage; the
        # projector isolates the entry and dead-letters it instead of stopping.
        await _rollback(conn)
        raise UnwritableBatch(partition, entries, f"{type(e).__name__}: {e}") from e
    except BaseException:
        await _rollback(conn)
        raise


async def _write(
    conn: Conn,
    sql: Statements,
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
    # Round trip 1: lock the partition and the checkpoint; load what the batch reads and the guard needs.
    loaded = _Loaded()
    async with conn.pipeline():
        await conn.execute("BEGIN")
        cp_cur = await conn.execute(
            sql.lock_batch, [projection, partition, partition_lock(sql.schema, partition)]
        )
        g_cur = None
        if entries:
            g_cur = await conn.execute(sql.guard_lookup, [_version_ranges(entries, events)])
        s_cur = m_cur = None
        if session_keys:
            s_cur = await conn.execute(sql.load_sessions, [store.json_rows(session_keys)])
        if memory_keys:
            m_cur = await conn.execute(sql.load_memories, [store.json_rows(memory_keys)])
    _check_cas(await cp_cur.fetchone(), partition, expected, epoch)
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
        moved = await _move_checkpoint(conn, sql, projection, partition, expected, position, epoch)
    _moved(moved, partition)
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


async def write_dead_letter(
    conn: Conn,
    sql: Statements,
    partition: int,
    entry: RawEntry,
    error: str,
    *,
    attempts: int,
    expected: str | None,
    epoch: int,
    projection: str,
) -> None:
    """Record ``entry`` as a dead letter and move the checkpoint past it, in one transaction
    (``ReadModel.dead_letter``)."""
    ms, seq = store.split_position(entry.position)
    async with conn.transaction():
        # Lock the checkpoint row (created if missing) and check the compare-and-set.
        await conn.execute(sql.checkpoint_row, [projection, partition])
        cur = await conn.execute(sql.lock_checkpoint, [projection, partition])
        _check_cas(await cur.fetchone(), partition, expected, epoch)
        await conn.execute(
            sql.insert_dead_letter,
            [projection, partition, ms, seq, entry.type, entry.version, entry.data, error, attempts],
        )
        moved = await _move_checkpoint(conn, sql, projection, partition, expected, entry.position, epoch)
        _moved(moved, partition)

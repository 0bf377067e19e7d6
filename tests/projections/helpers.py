"""Helpers of the read-model tests: feed a read model from a log, and dump every row for comparisons."""

from __future__ import annotations

from typing import Any

import msgspec

from events import EventLog, RawEntry
from projections.api import ReadModel
from projections.errors import PoisonEvent
from projections.memory import InMemoryReadModel
from projections.paging import to_us
from projections.postgres import PostgresReadModel


async def entries_of(log: EventLog, batch: int = 1000) -> dict[int, list[RawEntry]]:
    """Every entry of every partition, in order."""
    out: dict[int, list[RawEntry]] = {}
    for p in range(log.partitions):
        after = "0-0"
        while chunk := await log.read(p, after=after, count=batch):
            out.setdefault(p, []).extend(chunk)
            after = chunk[-1].position
    return out


async def project(log: EventLog, rm: ReadModel, *, batch: int = 1000, epoch: int = 1) -> int:
    """Apply what the log holds after the read model's checkpoints (a projector in miniature: a poison entry
    is dead-lettered at once)."""
    applied = 0
    checkpoints = await rm.checkpoints()
    for p in range(log.partitions):
        cp = checkpoints.get(p)
        pos = cp.position if cp else None
        while entries := await log.read(p, after=pos or "0-0", count=batch):
            while entries:
                try:
                    outcome = await rm.apply_batch(p, entries, expected=pos, epoch=epoch)
                except PoisonEvent as e:
                    i = next(k for k, entry in enumerate(entries) if entry.position == e.position)
                    if i:
                        pos = (await rm.apply_batch(p, entries[:i], expected=pos, epoch=epoch)).position
                    pos = await rm.dead_letter(
                        p, entries[i], e.message, attempts=1, expected=pos, epoch=epoch
                    )
                    entries = entries[i + 1 :]
                    continue
                pos = outcome.position
                applied += outcome.applied
                break
    return applied


def _j(value: Any) -> Any:
    """JSON values compared as JSON (the same on both backends)."""
    return msgspec.json.decode(msgspec.json.encode(value))


async def dump(rm: ReadModel) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the read models (not the operational records: checkpoint times, dead letters)."""
    if isinstance(rm, InMemoryReadModel):
        return _dump_memory(rm)
    assert isinstance(rm, PostgresReadModel)
    return await _dump_pg(rm)


def _dump_memory(rm: InMemoryReadModel) -> dict[str, list[tuple[Any, ...]]]:
    t = rm._t
    sessions = [
        (
            s.tenant,
            s.session_id,
            s.user_id,
            _j(s.metadata),
            to_us(s.created_at),
            to_us(s.updated_at),
            s.message_count,
            s.version,
            s.deleted,
        )
        for s in t.sessions.values()
    ]
    messages = [
        (
            tenant,
            sid,
            m.seq,
            m.role,
            m.content,
            m.name,
            _j(m.tool_calls),
            m.tool_call_id,
            m.timestamp,
            _j(m.metadata),
            m.event_id,
        )
        for (tenant, sid), msgs in t.messages.items()
        for m in msgs
    ]
    memories = [
        (tenant, user, scope, key, _j(m.value), m.version, to_us(m.created_at), to_us(m.updated_at))
        for (tenant, user, scope), rows in t.memories.items()
        for key, m in rows.items()
    ]
    archive = [
        (
            a.partition,
            a.position,
            a.event_id,
            a.type,
            a.tenant,
            a.aggregate_kind,
            a.aggregate_id,
            a.version,
            a.user_id,
            a.actor_kind,
            a.actor_id,
            a.correlation_id,
            a.causation_id,
            to_us(a.occurred_at),
            to_us(a.recorded_at),
            _j(a.payload),
        )
        for a in t.audit
    ]
    checkpoints = [(proj, p, cp.position) for (proj, p), cp in t.checkpoints.items()]
    return _sorted(
        sessions=sessions, messages=messages, memories=memories, archive=archive, checkpoints=checkpoints
    )


async def _dump_pg(rm: PostgresReadModel) -> dict[str, list[tuple[Any, ...]]]:
    s = rm.sql.q
    async with rm.pool.connection() as conn:

        async def rows(query: str) -> list[tuple[Any, ...]]:
            return await (await conn.execute(query)).fetchall()

        sessions = [
            (r[0], r[1], r[2], _j(r[3]), to_us(r[4]), to_us(r[5]), r[6], r[7], r[8])
            for r in await rows(
                f"SELECT tenant, session_id, user_id, metadata, created_at, updated_at,"
                f" message_count, version, deleted FROM {s}.sessions"
            )
        ]
        messages = [
            (r[0], r[1], r[2], r[3], r[4], r[5], _j(r[6]), r[7], r[8], _j(r[9]), r[10])
            for r in await rows(
                f"SELECT tenant, session_id, seq, role, content, name, tool_calls, tool_call_id,"
                f' "timestamp", metadata, event_id::text FROM {s}.messages'
            )
        ]
        memories = [
            (r[0], r[1], r[2], r[3], _j(r[4]), r[5], to_us(r[6]), to_us(r[7]))
            for r in await rows(
                f"SELECT tenant, user_id, scope, key, value, version, created_at, updated_at"
                f" FROM {s}.memories"
            )
        ]
        archive = [
            (
                r[0],
                f"{r[1]}-{r[2]}",
                r[3],
                r[4],
                r[5],
                r[6],
                r[7],
                r[8],
                r[9],
                r[10],
                r[11],
                r[12],
                r[13],
                to_us(r[14]),
                to_us(r[15]),
                _j(r[16]),
            )
            for r in await rows(
                f"SELECT partition, pos_ms, pos_seq, event_id::text, type, tenant, aggregate_kind,"
                f" aggregate_id, version, user_id, actor_kind, actor_id, correlation_id,"
                f" causation_id, occurred_at, recorded_at, coalesce(event->'payload', '{{}}')"
                f" FROM {s}.event_archive"
            )
        ]
        checkpoints = [
            (r[0], r[1], None if r[2] is None else f"{r[2]}-{r[3]}")
            for r in await rows(f"SELECT projection, partition, pos_ms, pos_seq FROM {s}.checkpoints")
        ]
    return _sorted(
        sessions=sessions, messages=messages, memories=memories, archive=archive, checkpoints=checkpoints
    )


def _sorted(**tables: list[tuple[Any, ...]]) -> dict[str, list[tuple[Any, ...]]]:
    return {name: sorted(rows, key=repr) for name, rows in tables.items()}

"""SQL of the PostgreSQL read model, for one schema, and the conversions between rows and records.

Every statement names its tables with the schema (``"<schema>".sessions``), so one connection pool serves
several schemas (a rebuild writes a shadow schema through the live model's pool). Statements that take many
rows take them as arrays (``unnest``), so a batch costs one statement per table, never one per row; messages
and archive rows go in with COPY.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec

from .api import AuditFilter, AuditRecord, Checkpoint, DeadLetter, MemoryRecord, MessageRecord, SessionRecord
from .apply import ArchiveRow, Changes
from .migrations import check_schema_name
from .paging import ms_bounds, parse_audit_cursor

__all__ = [
    "ARCHIVE_COPY_TYPES",
    "GUARD_CONSTRAINT",
    "MESSAGE_COPY_TYPES",
    "Statements",
    "archive_rows",
    "audit_record",
    "audit_where",
    "checkpoint",
    "dead_letter",
    "json_rows",
    "memory_params",
    "memory_record",
    "memory_state",
    "message_record",
    "message_rows",
    "position_str",
    "session_params",
    "session_record",
    "split_position",
    "uuid_bytes",
]

_encode = msgspec.json.Encoder().encode

SESSION_COLUMNS = (
    "tenant, session_id, user_id, metadata, created_at, updated_at, message_count, version, deleted"
)
MESSAGE_COLUMNS = 'seq, role, content, name, tool_calls, tool_call_id, "timestamp", metadata, event_id::text'
AUDIT_COLUMNS = (
    "partition, pos_ms, pos_seq, event_id::text, type, tenant, aggregate_kind, aggregate_id, version,"
    " user_id, actor_kind, actor_id, correlation_id, causation_id, occurred_at, recorded_at,"
    " coalesce(event->'payload', '{}'::json)"
)
DEAD_LETTER_COLUMNS = (
    "id, partition, pos_ms, pos_seq, type, data, error, attempts, created_at, retried, version"
)

GUARD_CONSTRAINT = "event_archive_aggregate_version_key"


def split_position(position: str) -> tuple[int, int]:
    ms, _, seq = position.partition("-")
    return int(ms), int(seq or 0)


def position_str(ms: int | None, seq: int | None) -> str | None:
    return None if ms is None else f"{ms}-{seq or 0}"


class Statements:
    """The SQL of one schema."""

    def __init__(self, schema: str) -> None:
        s = f'"{check_schema_name(schema)}"'
        self.schema = schema
        self.q = s
        # -- queries ------------------------------------------------------------------------------------
        self.get_session = f"SELECT {SESSION_COLUMNS} FROM {s}.sessions WHERE tenant = %s AND session_id = %s"
        self.list_sessions = (
            f"SELECT {SESSION_COLUMNS} FROM {s}.sessions WHERE tenant = %s AND user_id = %s AND NOT deleted"
        )
        self.list_sessions_after = f"{self.list_sessions} AND (updated_at, session_id) < (%s, %s)"
        self.message_count = (
            f"SELECT message_count, deleted FROM {s}.sessions WHERE tenant = %s AND session_id = %s"
        )
        self.messages = (
            f"SELECT {MESSAGE_COLUMNS} FROM {s}.messages"
            " WHERE tenant = %s AND session_id = %s AND seq BETWEEN %s AND %s ORDER BY seq"
        )
        self.memory = (
            f"SELECT scope, key, value, version, created_at, updated_at FROM {s}.memories"
            " WHERE tenant = %s AND user_id = %s AND scope = ANY(%s)"
        )
        self.checkpoints = (
            f"SELECT partition, pos_ms, pos_seq, epoch, updated_at FROM {s}.checkpoints"
            " WHERE projection = %s ORDER BY partition"
        )
        self.dead_letters = f"SELECT {DEAD_LETTER_COLUMNS} FROM {s}.dead_letters"
        # Migration status: the table exists once ``projections.migrations.migrate`` ran on the schema.
        self.has_migrations = f"SELECT to_regclass('{s}.schema_migrations') IS NOT NULL"
        self.applied_migrations = f"SELECT version FROM {s}.schema_migrations"
        # -- the write side -----------------------------------------------------------------------------
        # A batch's first statement: take the partition lock, then create (if missing), lock and read the
        # checkpoint row. The no-op DO UPDATE locks the row as FOR UPDATE would, in the same statement.
        self.lock_batch = (
            f"INSERT INTO {s}.checkpoints AS c (projection, partition)"
            " SELECT %s, %s FROM (SELECT pg_advisory_xact_lock(%s)) AS locked"
            " ON CONFLICT (projection, partition) DO UPDATE SET epoch = c.epoch"
            " RETURNING pos_ms, pos_seq, epoch"
        )
        self.checkpoint_row = (
            f"INSERT INTO {s}.checkpoints (projection, partition) VALUES (%s, %s) ON CONFLICT DO NOTHING"
        )
        self.lock_checkpoint = (
            f"SELECT pos_ms, pos_seq, epoch FROM {s}.checkpoints WHERE projection = %s AND partition = %s"
            " FOR UPDATE"
        )
        # The compare-and-set itself (the row is locked already; this states the condition once more).
        self.move_checkpoint = (
            f"UPDATE {s}.checkpoints SET pos_ms = %s, pos_seq = %s, epoch = %s, updated_at = now()"
            " WHERE projection = %s AND partition = %s AND epoch <= %s"
            " AND (pos_ms, pos_seq) IS NOT DISTINCT FROM (%s::bigint, %s::bigint)"
        )
        # The per-batch statements of the projector take their rows as ONE JSON array of arrays (msgspec
        # encodes it in C; adapting Python lists into PostgreSQL arrays costs Python time per item), read as
        # jsonb: parsed once, where every ``->>`` on json would parse the element's text again.
        self.load_sessions = (
            f"SELECT {SESSION_COLUMNS} FROM {s}.sessions"
            " WHERE (tenant, session_id) IN (SELECT x->>0, x->>1 FROM jsonb_array_elements(%s::jsonb) x)"
        )
        self.load_memories = (
            f"SELECT tenant, user_id, scope, key, version, created_at FROM {s}.memories"
            " WHERE (tenant, user_id, scope, key) IN"
            " (SELECT x->>0, x->>1, x->>2, x->>3 FROM jsonb_array_elements(%s::jsonb) x)"
        )
        self.purge_messages = (
            f"DELETE FROM {s}.messages"
            " WHERE (tenant, session_id) IN (SELECT x->>0, x->>1 FROM jsonb_array_elements(%s::jsonb) x)"
        )
        self.clear_scopes = (
            f"DELETE FROM {s}.memories WHERE (tenant, user_id, scope) IN"
            " (SELECT x->>0, x->>1, x->>2 FROM jsonb_array_elements(%s::jsonb) x)"
        )
        # user.forgotten: every memory row of the user, and their deleted sessions (live ones are new).
        self.forget_memories = (
            f"DELETE FROM {s}.memories WHERE (tenant, user_id) IN"
            " (SELECT x->>0, x->>1 FROM jsonb_array_elements(%s::jsonb) x)"
        )
        self.forget_sessions = (
            f"DELETE FROM {s}.sessions WHERE deleted AND (tenant, user_id) IN"
            " (SELECT x->>0, x->>1 FROM jsonb_array_elements(%s::jsonb) x)"
        )
        self.delete_sessions = (
            f"DELETE FROM {s}.sessions"
            " WHERE (tenant, session_id) IN (SELECT x->>0, x->>1 FROM jsonb_array_elements(%s::jsonb) x)"
        )
        self.delete_memories = (
            f"DELETE FROM {s}.memories WHERE (tenant, user_id, scope, key) IN"
            " (SELECT x->>0, x->>1, x->>2, x->>3 FROM jsonb_array_elements(%s::jsonb) x)"
        )
        self.upsert_memories = (
            f"INSERT INTO {s}.memories (tenant, user_id, scope, key, value, version, created_at, updated_at)"
            " SELECT x->>0, x->>1, x->>2, x->>3, (x->4)::jsonb, (x->>5)::bigint, (x->>6)::timestamptz,"
            " (x->>7)::timestamptz FROM jsonb_array_elements(%s::jsonb) x"
            " ON CONFLICT (tenant, user_id, scope, key) DO UPDATE SET value = EXCLUDED.value,"
            " version = EXCLUDED.version, created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at"
        )
        self.upsert_sessions = (
            f"INSERT INTO {s}.sessions ({SESSION_COLUMNS})"
            " SELECT x->>0, x->>1, x->>2, (x->3)::jsonb, (x->>4)::timestamptz, (x->>5)::timestamptz,"
            " (x->>6)::bigint, (x->>7)::bigint, (x->>8)::boolean FROM jsonb_array_elements(%s::jsonb) x"
            " ON CONFLICT (tenant, session_id) DO UPDATE SET user_id = EXCLUDED.user_id,"
            " metadata = EXCLUDED.metadata, created_at = EXCLUDED.created_at,"
            " updated_at = EXCLUDED.updated_at, message_count = EXCLUDED.message_count,"
            " version = EXCLUDED.version, deleted = EXCLUDED.deleted"
        )
        # Binary COPY (types: ``MESSAGE_COPY_TYPES``, ``ARCHIVE_COPY_TYPES``): the server parses no text for
        # the numbers, times and ids, and the rows are formatted by psycopg's C code.
        self.copy_messages = (
            f"COPY {s}.messages (tenant, session_id, seq, role, content, name, tool_calls, tool_call_id,"
            ' "timestamp", metadata, event_id) FROM STDIN (FORMAT binary)'
        )
        self.copy_archive = (
            f"COPY {s}.event_archive (partition, pos_ms, pos_seq, event_id, type, tenant, aggregate_kind,"
            " aggregate_id, version, user_id, actor_kind, actor_id, correlation_id, causation_id,"
            " occurred_at, recorded_at, event) FROM STDIN (FORMAT binary)"
        )
        # The guard looks up each aggregate's range of versions in the batch: index searches of the archive's
        # UNIQUE (aggregate, version) key, never a scan. A range may return more versions than the batch
        # holds; those are facts too.
        self.guard_lookup = (
            "SELECT a.event_id::text, a.tenant, a.aggregate_kind, a.aggregate_id, a.version"
            f" FROM jsonb_array_elements(%s::jsonb) x JOIN {s}.event_archive a ON a.tenant = x->>0"
            " AND a.aggregate_kind = x->>1 AND a.aggregate_id = x->>2"
            " AND a.version BETWEEN (x->>3)::bigint AND (x->>4)::bigint"
        )
        self.insert_dead_letter = (
            f"INSERT INTO {s}.dead_letters (projection, partition, pos_ms, pos_seq, type, version, data,"
            " error, attempts) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
        )
        # -- rebuild ------------------------------------------------------------------------------------
        self.replay = (
            "SELECT pos_ms, pos_seq, type, version, data FROM ("
            f" SELECT pos_ms, pos_seq, type, version, convert_to(event::text, 'UTF8') AS data"
            f" FROM {s}.event_archive WHERE partition = %(p)s AND (pos_ms, pos_seq) > (%(ms)s, %(seq)s)"
            " ORDER BY pos_ms, pos_seq LIMIT %(n)s) a"
            " UNION ALL SELECT * FROM ("
            f" SELECT pos_ms, pos_seq, type, version, data FROM {s}.dead_letters"
            " WHERE partition = %(p)s AND NOT retried AND (pos_ms, pos_seq) > (%(ms)s, %(seq)s)"
            " ORDER BY pos_ms, pos_seq LIMIT %(n)s) d"
            " ORDER BY pos_ms, pos_seq LIMIT %(n)s"
        )
        self.replay_size = (
            f"SELECT (SELECT count(*) FROM {s}.event_archive)"
            f" + (SELECT count(*) FROM {s}.dead_letters WHERE NOT retried)"
        )


# -- rows -> records -------------------------------------------------------------------------------------


def session_record(row: tuple[Any, ...]) -> SessionRecord:
    t, sid, user, metadata, created, updated, count, version, deleted = row
    return SessionRecord(
        tenant=t,
        session_id=sid,
        user_id=user,
        metadata=metadata,
        created_at=created,
        updated_at=updated,
        message_count=count,
        version=version,
        deleted=deleted,
    )


def message_record(row: tuple[Any, ...]) -> MessageRecord:
    seq, role, content, name, tool_calls, tool_call_id, ts, metadata, event_id = row
    return MessageRecord(
        seq=seq,
        role=role,
        content=content,
        name=name,
        tool_calls=tool_calls,
        tool_call_id=tool_call_id,
        timestamp=ts,
        metadata=metadata,
        event_id=event_id,
    )


def memory_record(user_id: str, row: tuple[Any, ...]) -> MemoryRecord:
    scope, key, value, version, created, updated = row
    return MemoryRecord(
        user_id=user_id,
        session_id=scope or None,
        key=key,
        value=value,
        version=version,
        created_at=created,
        updated_at=updated,
    )


def audit_record(row: tuple[Any, ...]) -> AuditRecord:
    (p, ms, seq, event_id, type_, t, kind, agg, version, user, akind, aid, corr, caus, occ, rec, payload) = (
        row
    )
    return AuditRecord(
        partition=p,
        position=f"{ms}-{seq}",
        event_id=event_id,
        type=type_,
        tenant=t,
        aggregate_kind=kind,
        aggregate_id=agg,
        version=version,
        user_id=user,
        actor_kind=akind,
        actor_id=aid,
        correlation_id=corr,
        causation_id=caus,
        occurred_at=occ,
        recorded_at=rec,
        payload=payload if isinstance(payload, dict) else {},
    )


def checkpoint(row: tuple[Any, ...]) -> Checkpoint:
    p, ms, seq, epoch, updated = row
    return Checkpoint(partition=p, position=position_str(ms, seq), epoch=epoch, updated_at=updated)


def dead_letter(row: tuple[Any, ...]) -> DeadLetter:
    id_, p, ms, seq, type_, data, error, attempts, created, retried, version = row
    return DeadLetter(
        id=id_,
        partition=p,
        position=f"{ms}-{seq}",
        type=type_,
        data=bytes(data),
        error=error,
        attempts=attempts,
        created_at=created,
        retried=retried,
        version=version,
    )


# -- audit filter -> WHERE ---------------------------------------------------------------------------------


def audit_where(flt: AuditFilter, after: str | None) -> tuple[str, list[Any]]:
    where = ["tenant = %s"]
    params: list[Any] = [flt.tenant]
    if flt.session_id is not None:
        where.append("aggregate_kind = 'session' AND aggregate_id = %s")
        params.append(flt.session_id)
    if flt.user_id is not None:
        where.append("user_id = %s")
        params.append(flt.user_id)
    if flt.types is not None:
        where.append("type = ANY(%s::text[])")
        params.append(list(flt.types))
    if flt.actor_kind is not None:
        where.append("actor_kind = %s")
        params.append(flt.actor_kind)
    if flt.actor_id is not None:
        where.append("actor_id = %s")
        params.append(flt.actor_id)
    lo, hi = ms_bounds(flt.since, flt.until)
    if lo is not None:
        where.append("pos_ms >= %s")
        params.append(lo)
    if hi is not None:
        where.append("pos_ms < %s")
        params.append(hi)
    if after is not None:
        where.append("(pos_ms, partition, pos_seq) > (%s, %s, %s)")
        params.extend(parse_audit_cursor(after))
    return " AND ".join(where), params


# -- a batch's net effect -> statement parameters ----------------------------------------------------------


def json_rows(rows: Any) -> str:
    """Rows as the one JSON parameter of a statement that reads them with ``jsonb_array_elements``."""
    return _encode(rows).decode()


def session_params(changes: Changes) -> str:
    return json_rows(
        [
            (
                s.tenant,
                s.session_id,
                s.user_id,
                s.metadata,
                s.created_at,
                s.updated_at,
                s.message_count,
                s.version,
                s.deleted,
            )
            for s in changes.sessions.values()
        ]
    )


def memory_params(changes: Changes) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """(rows to upsert, keys to delete), for ``json_rows``."""
    upserts: list[tuple[Any, ...]] = []
    deletes: list[tuple[Any, ...]] = []
    for (t, user, scope, key), m in changes.memories.items():
        if m is None:
            deletes.append((t, user, scope, key))
        else:
            upserts.append((t, user, scope, key, m.value, m.version, m.created_at, m.updated_at))
    return upserts, deletes


# Column types of the binary COPYs. "bytea" is the raw-bytes dumper, used where the bytes are made here: a
# uuid's 16 bytes, jsonb's version byte and JSON text (msgspec's), the archive's json exactly as the log holds
# it (the server reads each field with the receive function of its column, whatever dumper made it).
MESSAGE_COPY_TYPES = (
    *("text", "text", "int8", "text", "text", "text", "bytea"),
    *("text", "int8", "bytea", "bytea"),
)
ARCHIVE_COPY_TYPES = (
    *("int4", "int8", "int8", "bytea", "text", "text", "text", "text", "int8"),
    *("text", "text", "text", "text", "text", "timestamptz", "timestamptz", "bytea"),
)


def uuid_bytes(event_id: str) -> bytes:
    """A uuid's 16 bytes, from its text (what a binary COPY sends for a uuid column)."""
    return bytes.fromhex(event_id.replace("-", ""))


# The COPY rows are generated one at a time and written at once: a row lives only while it is formatted,
# so a batch does not hold (and the garbage collector does not keep scanning) tens of thousands of tuples.


def message_rows(changes: Changes) -> Iterator[tuple[Any, ...]]:
    """The COPY rows of the batch's messages (``MESSAGE_COPY_TYPES``)."""
    event_id, event_bytes = "", b""
    for (t, sid), msgs in changes.messages.items():
        for m in msgs:
            if m.event_id != event_id:  # the messages of one event are consecutive
                event_id, event_bytes = m.event_id, uuid_bytes(m.event_id)
            yield (
                t,
                sid,
                m.seq,
                m.role,
                m.content,
                m.name,
                None if m.tool_calls is None else b"\x01" + _encode(m.tool_calls),
                m.tool_call_id,
                m.timestamp,
                None if m.metadata is None else b"\x01" + _encode(m.metadata),
                event_bytes,
            )


def archive_rows(rows: list[ArchiveRow]) -> Iterator[tuple[Any, ...]]:
    """The COPY rows of the archive (``ARCHIVE_COPY_TYPES``)."""
    for r in rows:
        ms, _, seq = r.position.partition("-")
        yield (
            r.partition,
            int(ms),
            int(seq or 0),
            uuid_bytes(r.event_id),
            r.type,
            r.tenant,
            r.aggregate_kind,
            r.aggregate_id,
            r.version,
            r.user_id,
            r.actor_kind,
            r.actor_id,
            r.correlation_id,
            r.causation_id,
            r.occurred_at,
            r.recorded_at,
            r.data,
        )


def memory_state(row: tuple[Any, ...]) -> tuple[tuple[str, str, str, str], MemoryRecord]:
    """A row of ``load_memories`` as the state a batch reads (its value is not loaded: not needed)."""
    t, user, scope, key, version, created = row
    record = MemoryRecord(
        user_id=user,
        session_id=scope or None,
        key=key,
        value=None,
        version=version,
        created_at=created,
        updated_at=created,
    )
    return (t, user, scope, key), record

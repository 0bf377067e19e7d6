"""The in-memory read model: the embedded default, and the reference the PostgreSQL one is tested against.

It keeps the ``projections.api.ReadModel`` contract exactly (one contract suite runs against both). All of its
state lives in one ``_Tables`` object, so a rebuild switches over by replacing that one reference.

Asyncio safety: no method awaits between reading and writing its state, so each call is atomic with respect
to every other coroutine (no lock needed). ``apply_batch`` computes the whole batch first and only then
mutates, so a poison entry or a refused compare-and-set leaves nothing written. The one wait is at the start
of a write: while ``switch_to`` brings a shadow up to date, writers wait for it, then write to the new
state. Not thread-safe.
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from events.codec import RawEntry
from events.schema import utcnow

from .api import (
    PROJECTION,
    AuditFilter,
    AuditPage,
    AuditRecord,
    BatchOutcome,
    CatchUp,
    Checkpoint,
    DeadLetter,
    MemoryRecord,
    MessagePage,
    MessageRecord,
    Order,
    ReadModel,
    SessionPage,
    SessionRecord,
    position_key,
)
from .apply import (
    USER_SCOPE,
    AggregateVersion,
    ArchiveRow,
    Changes,
    MemoryKey,
    ScopeKey,
    SessionKey,
    archive_key,
    check_batch,
    check_checkpoint,
    decode,
    guard,
)
from .paging import (
    audit_cursor,
    message_window,
    ms_bounds,
    parse_audit_cursor,
    parse_session_cursor,
    session_cursor,
    to_us,
)

__all__ = ["InMemoryReadModel"]

Clock = Callable[[], Any]


def audit_record(row: ArchiveRow) -> AuditRecord:
    event = msgspec.json.decode(row.data)
    payload = event.get("payload") if isinstance(event, dict) else None
    return AuditRecord(
        partition=row.partition,
        position=row.position,
        event_id=row.event_id,
        type=row.type,
        tenant=row.tenant,
        aggregate_kind=row.aggregate_kind,
        aggregate_id=row.aggregate_id,
        version=row.version,
        user_id=row.user_id,
        actor_kind=row.actor_kind,
        actor_id=row.actor_id,
        correlation_id=row.correlation_id,
        causation_id=row.causation_id,
        occurred_at=row.occurred_at,
        recorded_at=row.recorded_at,
        payload=payload if isinstance(payload, dict) else {},
    )


class _Tables:
    """Everything the read model holds. Implements ``projections.apply.State``."""

    def __init__(self) -> None:
        self.sessions: dict[SessionKey, SessionRecord] = {}
        self.user_sessions: dict[tuple[str, str], set[str]] = {}
        self.messages: dict[SessionKey, list[MessageRecord]] = {}
        self.memories: dict[ScopeKey, dict[str, MemoryRecord]] = {}
        # The archive, in audit order, with its sort keys beside it for bisect.
        self.audit: list[AuditRecord] = []
        self.audit_keys: list[tuple[int, int, int]] = []
        # Per partition, in position order: what a rebuild replays.
        self.entries: dict[int, list[RawEntry]] = {}
        self.applied: dict[AggregateVersion, str] = {}  # the (aggregate, version) guard -> event id
        self.checkpoints: dict[tuple[str, int], Checkpoint] = {}
        self.dead_letters: list[DeadLetter] = []

    def session(self, key: SessionKey) -> SessionRecord | None:
        return self.sessions.get(key)

    def memory(self, key: MemoryKey) -> MemoryRecord | None:
        return self.memories.get(key[:3], {}).get(key[3])

    def forget(self, user: tuple[str, str]) -> None:
        """user.forgotten: every memory row of the user and the rows of their deleted sessions."""
        for scope in [k for k in self.memories if k[:2] == user]:
            del self.memories[scope]
        live = self.user_sessions.get(user, set())
        for sid in [sid for sid in live if self.sessions[(user[0], sid)].deleted]:
            live.discard(sid)
            del self.sessions[(user[0], sid)]
            self.messages.pop((user[0], sid), None)
        if not live:
            self.user_sessions.pop(user, None)

    def write(self, changes: Changes, audit: list[AuditRecord]) -> None:
        """Write a batch's net effect (in the order ``projections.apply`` prescribes). Cannot fail."""
        for skey in changes.purged:
            self.messages.pop(skey, None)
        for scope in changes.cleared:
            self.memories.pop(scope, None)
        for forgotten in changes.forgotten:
            self.forget(forgotten)
        for skey in changes.erased:
            erased = self.sessions.pop(skey, None)
            if erased is not None:
                self.user_sessions.get((erased.tenant, erased.user_id), set()).discard(erased.session_id)
        for mkey, memory in changes.memories.items():
            scope_key, name = mkey[:3], mkey[3]
            if memory is None:
                rows = self.memories.get(scope_key)
                if rows is not None:
                    rows.pop(name, None)
                    if not rows:
                        del self.memories[scope_key]
            else:
                self.memories.setdefault(scope_key, {})[name] = memory
        for skey, session in changes.sessions.items():
            self.sessions[skey] = session
            self.user_sessions.setdefault((session.tenant, session.user_id), set()).add(session.session_id)
        for skey, added in changes.messages.items():
            self.messages.setdefault(skey, []).extend(added)
        for row, audit_row in zip(changes.archive, audit, strict=True):
            k = archive_key(row.position, row.partition)
            i = bisect.bisect_right(self.audit_keys, k)
            self.audit_keys.insert(i, k)
            self.audit.insert(i, audit_row)
            self.entries.setdefault(row.partition, []).append(row.entry())
            self.applied[row.aggregate] = row.event_id


class InMemoryReadModel(ReadModel):
    """``projections.api.ReadModel`` in process memory. ``clock`` stamps checkpoints and dead letters only
    (operational records); the read models themselves take every time from the events."""

    def __init__(self, *, clock: Clock = utcnow) -> None:
        self._t = _Tables()
        self._clock = clock
        self._shadow: InMemoryReadModel | None = None
        self._switching: asyncio.Event | None = None  # set while switch_to holds the writers off
        # The users' wrapped data keys (service.keyring.KeyStore): not a projection, so a rebuild keeps them.
        self._data_keys: dict[tuple[str, str], tuple[str, bytes]] = {}

    async def close(self) -> None:
        """Nothing to release."""

    async def pending_migrations(self) -> list[int]:
        """Nothing to migrate: the state is built in this process, in the current shape."""
        return []

    async def _writable(self) -> None:
        """Wait while a switch is under way (it returns at once otherwise, without yielding)."""
        while self._switching is not None:
            await self._switching.wait()

    # -- queries ---------------------------------------------------------------------------------------
    async def get_session(self, tenant: str, session_id: str) -> SessionRecord | None:
        return self._t.sessions.get((tenant, session_id))

    async def list_sessions(
        self, tenant: str, user_id: str, *, limit: int = 50, after: str | None = None
    ) -> SessionPage:
        t = self._t
        rows = [
            s
            for sid in t.user_sessions.get((tenant, user_id), ())
            if not (s := t.sessions[(tenant, sid)]).deleted
        ]
        keyed = sorted(((to_us(s.updated_at), s.session_id), s) for s in rows)
        keyed.reverse()
        if after is not None:
            cursor = parse_session_cursor(after)
            keyed = [(k, s) for k, s in keyed if k < cursor]
        page = keyed if limit <= 0 else keyed[:limit]
        more = len(page) < len(keyed)
        last = page[-1][1] if page else None
        return SessionPage(
            sessions=[s for _, s in page],
            next_cursor=session_cursor(last.updated_at, last.session_id) if more and last else None,
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
        session = self._t.sessions.get((tenant, session_id))
        count = 0 if session is None or session.deleted else session.message_count
        w = message_window(count, limit=limit, offset=offset, order=order, after=after, before=before)
        if w.empty:
            return MessagePage(messages=[], total=count)
        rows = self._t.messages.get((tenant, session_id), [])[w.first - 1 : w.last]
        if w.descending:
            rows = rows[::-1]
        return MessagePage(messages=rows, total=count, next_cursor=w.next_cursor)

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
        out: dict[str, MemoryRecord] = {}
        for scope in scopes:  # the session scope last: it wins
            rows = self._t.memories.get((tenant, user_id, scope), {})
            if key is None:
                out.update(rows)
            elif key in rows:
                out[key] = rows[key]
        return dict(sorted(out.items()))

    async def audit(self, flt: AuditFilter, *, limit: int = 100, after: str | None = None) -> AuditPage:
        t = self._t
        start = 0 if after is None else bisect.bisect_right(t.audit_keys, parse_audit_cursor(after))
        lo_ms, hi_ms = ms_bounds(flt.since, flt.until)
        types = set(flt.types) if flt.types is not None else None
        out: list[AuditRecord] = []
        more = False
        for i in range(start, len(t.audit)):
            r = t.audit[i]
            ms = t.audit_keys[i][0]
            if hi_ms is not None and ms >= hi_ms:
                break
            if (
                r.tenant != flt.tenant
                or (lo_ms is not None and ms < lo_ms)
                or (
                    flt.session_id is not None
                    and (r.aggregate_kind, r.aggregate_id) != ("session", flt.session_id)
                )
                or (flt.user_id is not None and r.user_id != flt.user_id)
                or (types is not None and r.type not in types)
                or (flt.actor_kind is not None and r.actor_kind != flt.actor_kind)
                or (flt.actor_id is not None and r.actor_id != flt.actor_id)
            ):
                continue
            if 0 < limit <= len(out):
                more = True
                break
            out.append(r)
        last = out[-1] if out else None
        return AuditPage(
            events=out,
            next_cursor=audit_cursor(archive_key(last.position, last.partition)) if more and last else None,
        )

    async def checkpoints(self, projection: str = PROJECTION) -> dict[int, Checkpoint]:
        return {p: cp for (proj, p), cp in sorted(self._t.checkpoints.items()) if proj == projection}

    # -- write side ------------------------------------------------------------------------------------
    def _cas(self, projection: str, partition: int, expected: str | None, epoch: int) -> None:
        cp = self._t.checkpoints.get((projection, partition))
        stored, stored_epoch = (cp.position, cp.epoch) if cp is not None else (None, 0)
        check_checkpoint(partition, stored, stored_epoch, expected, epoch)

    def _set_checkpoint(self, projection: str, partition: int, position: str | None, epoch: int) -> None:
        self._t.checkpoints[(projection, partition)] = Checkpoint(
            partition=partition, position=position, epoch=epoch, updated_at=self._clock()
        )

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
        await self._writable()
        self._cas(projection, partition, expected, epoch)
        t = self._t
        events = [decode(entry) for entry in entries]
        skip = guard(entries, events, t.applied.get)
        changes = Changes.fold(t, entries, events, skip)
        audit = [audit_record(row) for row in changes.archive]
        # Nothing can fail from here on: the batch lands whole.
        t.write(changes, audit)
        position = entries[-1].position if entries else expected
        self._set_checkpoint(projection, partition, position, epoch)
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
        await self._writable()
        self._cas(projection, partition, expected, epoch)
        t = self._t
        letter = DeadLetter(
            id=len(t.dead_letters) + 1,
            partition=partition,
            position=entry.position,
            type=entry.type,
            data=entry.data,
            error=error,
            attempts=attempts,
            created_at=self._clock(),
            version=entry.version,
        )
        t.dead_letters.append(letter)
        self._set_checkpoint(projection, partition, entry.position, epoch)
        return entry.position

    async def dead_letters(self, *, limit: int = 100, include_retried: bool = False) -> list[DeadLetter]:
        rows = [d for d in self._t.dead_letters if include_retried or not d.retried]
        return rows if limit <= 0 else rows[:limit]

    # -- rebuild support (projections.rebuild) ---------------------------------------------------------
    async def replay(self, partition: int, after: str | None, limit: int) -> list[RawEntry]:
        """What this read model holds of a partition after ``after``, in order: its archived events and its
        (not retried) dead letters, as the stream entries they came from."""
        t = self._t
        start = position_key(after)
        archived = t.entries.get(partition, [])
        i = bisect.bisect_right(archived, start, key=lambda e: position_key(e.position))
        out = archived[i : i + limit]
        letters = [
            RawEntry(d.partition, d.position, d.type, d.version, d.data)
            for d in t.dead_letters
            if d.partition == partition and not d.retried and position_key(d.position) > start
        ]
        if letters:
            out = sorted([*out, *letters], key=lambda e: position_key(e.position))[:limit]
        return out

    async def replay_size(self) -> int:
        """How many entries ``replay`` yields over every partition from the start."""
        return sum(len(v) for v in self._t.entries.values()) + sum(
            1 for d in self._t.dead_letters if not d.retried
        )

    async def load_data_key(self, tenant: str, user_id: str) -> tuple[str, bytes] | None:
        return self._data_keys.get((tenant, user_id))

    async def save_data_key(
        self, tenant: str, user_id: str, key_id: str, wrapped: bytes
    ) -> tuple[str, bytes]:
        return self._data_keys.setdefault((tenant, user_id), (key_id, wrapped))

    async def delete_data_key(self, tenant: str, user_id: str) -> bool:
        return self._data_keys.pop((tenant, user_id), None) is not None

    async def open_shadow(self, *, fresh: bool = False) -> InMemoryReadModel:
        """An empty read model to rebuild into (the one of an unfinished rebuild, unless ``fresh``)."""
        if fresh or self._shadow is None:
            self._shadow = InMemoryReadModel(clock=self._clock)
        return self._shadow

    async def switch_to(
        self, shadow: ReadModel, projection: str = PROJECTION, *, catch_up: CatchUp | None = None
    ) -> None:
        """Serve ``shadow``'s state from now on (see ``ReadModel.switch_to``): writers wait while
        ``catch_up`` brings the shadow up to this model's checkpoints, then the state is replaced at once."""
        await self._writable()  # one switch at a time
        if shadow is not self._shadow or not isinstance(shadow, InMemoryReadModel):
            raise ValueError("switch_to takes the shadow that open_shadow returned")
        switching = self._switching = asyncio.Event()
        try:
            if catch_up is not None:
                await catch_up(await self.checkpoints(projection))
            self._swap(shadow, projection)
        finally:
            self._switching = None
            switching.set()

    def _swap(self, shadow: InMemoryReadModel, projection: str) -> None:
        new = shadow._t
        for (proj, p), cp in self._t.checkpoints.items():
            if proj != projection:
                new.checkpoints.setdefault((proj, p), cp)
                continue
            mine = new.checkpoints.get((proj, p))
            if mine is None:
                new.checkpoints[(proj, p)] = Checkpoint(partition=p, position=None, epoch=cp.epoch)
            elif mine.epoch < cp.epoch:
                new.checkpoints[(proj, p)] = msgspec.structs.replace(mine, epoch=cp.epoch)
        self._t = new
        self._shadow = None

"""Applying events to the read models: pure logic shared by every backend.

``Changes`` folds a batch of stream entries over a read-only view of the current state (``State``) and keeps
the batch's NET effect: the final row of every session touched, the messages added, the sessions purged, the
memory scopes cleared, the final value of every memory key touched, and one archive row per event. No clock,
no randomness, no I/O: times come from the event (``recorded_at`` is the log's time, from the entry id), so an
incremental build and a rebuild from zero are identical row for row.

A backend writes the net effect in this order, which is what makes it equal to applying event by event:

1. delete the stored messages of ``purged`` sessions;
2. delete every stored memory row of the ``cleared`` scopes; for each ``forgotten`` (tenant, user), delete
   every stored memory row of that user (any scope) and their deleted session rows; delete the session rows
   of ``erased``;
3. write ``memories``: a record is upserted, None is deleted (only keys touched after their scope's clear are
   here, so step 2 never removes them);
4. upsert ``sessions``; insert ``messages`` (only sessions still live at the end of the batch have any);
5. insert ``archive``.

Semantics (docs in ``projections.api``):

* ``session.created`` creates the session (created_at = updated_at = recorded_at).
* ``session.messages_added`` appends messages with seq continuing from message_count; a message's timestamp
  is its own, or the event's occurred_at in ms when it has none (0).
* ``session.deleted`` marks the session deleted and removes its messages and its session-scoped memory (the
  user scope stays; the archive keeps the events). message_count keeps the number the session reached.
* ``memory.saved`` upserts (version 1 on the first save of a key in its scope, +1 on every later save);
  ``memory.deleted`` removes the key; ``memory.cleared`` removes every key of the scope (the user scope when
  the payload has no session_id, else that session's). Memory of a deleted session is never resurrected.
* ``user.forgotten`` erases the user from the read models: their memory in every scope and the rows of their
  deleted sessions (the forget command deleted every live one first). Sessions and memory the user id gets
  afterwards are new rows. A ``session.deleted`` with reason ``user_forgotten`` (``FORGET_REASON``: the
  forget command's) removes the session's row at once. The archive keeps the events (their contents are
  ciphertext whose key is gone).
* Every event of a session aggregate (memory scoped to the session included) sets the session's version and
  updated_at.

An entry that cannot be decoded, or that the state cannot take (messages for a session the read model does
not have), raises ``PoisonEvent`` naming it, before anything is written.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from typing import Protocol

import msgspec

from events.codec import RawEntry, decode_entry
from events.errors import UndecodableEvent
from events.schema import (
    FORGET_REASON,
    AnyEvent,
    MemoryCleared,
    MemoryDeleted,
    MemorySaved,
    MessagesAdded,
    SessionCreated,
    SessionDeleted,
    UserForgotten,
    epoch_ms,
    has_nul,
)

from .api import BatchOutcome, MemoryRecord, MessageRecord, SessionRecord, position_key
from .errors import FencedOut, InvalidBatch, PoisonEvent

__all__ = [
    "USER_SCOPE",
    "AggregateVersion",
    "ArchiveRow",
    "Changes",
    "MemoryKey",
    "ScopeKey",
    "SessionKey",
    "State",
    "archive_key",
    "check_batch",
    "check_checkpoint",
    "decode",
    "guard",
]

USER_SCOPE = ""  # the ``scope`` column of user-scoped memory; a session id otherwise

SessionKey = tuple[str, str]  # tenant, session_id
ScopeKey = tuple[str, str, str]  # tenant, user_id, scope
MemoryKey = tuple[str, str, str, str]  # tenant, user_id, scope, key
AggregateVersion = tuple[str, str, str, int]  # tenant, aggregate kind, aggregate id, version


class ArchiveRow(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One archived event: its envelope in columns, the entry's JSON as the log holds it in ``data``.
    Not tracked by the garbage collector (``gc=False``): its fields are scalars, so it is never in a cycle,
    and a batch makes one per event."""

    partition: int
    position: str
    event_id: str
    type: str
    tenant: str
    aggregate_kind: str
    aggregate_id: str
    version: int
    user_id: str | None
    actor_kind: str
    actor_id: str
    correlation_id: str | None
    causation_id: str | None
    occurred_at: datetime
    recorded_at: datetime
    data: bytes

    @property
    def aggregate(self) -> AggregateVersion:
        return (self.tenant, self.aggregate_kind, self.aggregate_id, self.version)

    def entry(self) -> RawEntry:
        return RawEntry(self.partition, self.position, self.type, self.version, self.data)


def archive_key(position: str, partition: int) -> tuple[int, int, int]:
    """The audit order: recorded_at (the position's ms), then partition, then the position's sequence."""
    ms, seq = position_key(position)
    return (ms, partition, seq)


class State(Protocol):
    """Read-only view of the stored state that a batch needs."""

    def session(self, key: SessionKey) -> SessionRecord | None: ...

    def memory(self, key: MemoryKey) -> MemoryRecord | None:
        """The stored memory row; only its version and created_at are read (a backend may leave the value
        out)."""


def check_batch(partition: int, entries: Sequence[RawEntry], expected: str | None) -> None:
    """The caller's side of the contract: one partition, strictly increasing positions after ``expected``."""
    last = position_key(expected)
    for e in entries:
        if e.partition != partition:
            raise InvalidBatch(f"entry {e.position} is of partition {e.partition}, not {partition}")
        key = position_key(e.position)
        if key <= last:
            raise InvalidBatch(
                f"entry {e.position} of partition {partition} does not come after {expected or 'the start'}"
                " and the entries before it",
            )
        last = key


def decode(entry: RawEntry) -> AnyEvent:
    """The entry's event, or PoisonEvent.

    A string holding NUL (``\\u0000`` in the JSON) is poison for every backend, because PostgreSQL text and
    jsonb cannot store it: the backends stay identical, and the entry is dead-lettered, not half-applied."""
    try:
        event = decode_entry(entry)
    except UndecodableEvent as e:
        raise PoisonEvent(entry, e.message) from e
    except (ValueError, TypeError, OverflowError) as e:  # a malformed position
        raise PoisonEvent(entry, f"malformed entry: {e}") from e
    if entry.version < 1:
        raise PoisonEvent(entry, "the entry has no aggregate version")
    if b"\\u0000" in entry.data and has_nul(msgspec.json.decode(entry.data)):
        raise PoisonEvent(entry, "a string holds the NUL character (\\u0000), which PostgreSQL cannot store")
    return event


def guard(
    entries: Sequence[RawEntry],
    events: Sequence[AnyEvent],
    applied: Callable[[AggregateVersion], str | None],
) -> set[int]:
    """The (aggregate, version) guard. ``applied`` gives the event id stored at an aggregate version. Returns
    the indexes of entries already applied (the same event at the same version: a checkpoint behind its data;
    skip them). Another event at an applied version is poison.

    An event id alone identifies nothing here: it is an idempotency key that the log checks per partition
    and tenant for the dedup window (docs/events.md), so the same id may come again in another partition or
    after the window, as a new event the log acknowledged; it must be applied like any other."""
    skip: set[int] = set()
    seen_versions: set[AggregateVersion] = set()
    for i, (entry, event) in enumerate(zip(entries, events, strict=True)):
        version: AggregateVersion = (event.tenant, event.aggregate_kind, event.aggregate_id, entry.version)
        stored = applied(version)
        if stored == str(event.id):
            skip.add(i)
            continue
        if stored is not None or version in seen_versions:
            raise PoisonEvent(entry, f"aggregate version {version} is already applied by another event")
        seen_versions.add(version)
    return skip


def check_checkpoint(
    partition: int, stored: str | None, stored_epoch: int, expected: str | None, epoch: int
) -> None:
    """The checkpoint compare-and-set: the stored position must be ``expected`` and the stored epoch not
    newer than ``epoch``; else ``FencedOut`` (details: what was expected, what is stored)."""
    if stored_epoch > epoch:
        raise FencedOut(
            f"partition {partition} is fenced: its checkpoint was written with epoch {stored_epoch},"
            f" newer than {epoch}",
            partition=partition,
            epoch=epoch,
            stored_epoch=stored_epoch,
            position=stored,
        )
    if position_key(stored) != position_key(expected):
        raise FencedOut(
            f"the checkpoint of partition {partition} is at {stored or 'the start'}, not at"
            f" {expected or 'the start'}: another writer moved it",
            partition=partition,
            expected=expected,
            position=stored,
            epoch=epoch,
            stored_epoch=stored_epoch,
        )


class Changes:
    """The net effect of a batch on a ``State``. ``add`` each entry in order; then write the attributes."""

    def __init__(self, state: State) -> None:
        self._state = state
        self.sessions: dict[SessionKey, SessionRecord] = {}
        self.messages: dict[SessionKey, list[MessageRecord]] = {}
        self.purged: set[SessionKey] = set()
        self.cleared: set[ScopeKey] = set()
        self.memories: dict[MemoryKey, MemoryRecord | None] = {}
        self.archive: list[ArchiveRow] = []
        self.message_count = 0
        self.forgotten: set[tuple[str, str]] = set()  # (tenant, user): user.forgotten in this batch
        self.erased: set[SessionKey] = set()  # session rows to remove (a forgotten user's)

    @classmethod
    def fold(
        cls,
        state: State,
        entries: Sequence[RawEntry],
        events: Sequence[AnyEvent],
        skip: Collection[int] = (),
    ) -> Changes:
        """The net effect of ``entries`` (decoded as ``events``) on ``state``, leaving out the ``skip``
        indexes (what the guard found already applied)."""
        changes = cls(state)
        for i, (entry, event) in enumerate(zip(entries, events, strict=True)):
            if i not in skip:
                changes.add(entry, event)
        return changes

    def outcome(self, position: str | None, skipped: int) -> BatchOutcome:
        """What ``apply_batch`` reports once these changes and the checkpoint ``position`` are committed."""
        return BatchOutcome(
            position=position or "0-0",
            applied=len(self.archive),
            messages=self.message_count,
            skipped=skipped,
        )

    # -- reads through the batch's own changes ----------------------------------------------------------
    def session(self, key: SessionKey) -> SessionRecord | None:
        found = self.sessions.get(key)
        if found is None and key in self.erased:
            return None
        return found if found is not None else self._state.session(key)

    def memory(self, key: MemoryKey) -> MemoryRecord | None:
        if key in self.memories:
            return self.memories[key]
        if key[:3] in self.cleared or key[:2] in self.forgotten:
            return None
        return self._state.memory(key)

    # -- folding ----------------------------------------------------------------------------------------
    def add(self, entry: RawEntry, event: AnyEvent | None = None) -> None:
        """Fold one entry in. Raises PoisonEvent (and leaves the batch unusable: callers discard it)."""
        ev = decode(entry) if event is None else event
        assert ev.version is not None and ev.recorded_at is not None  # decode_entry sets both
        recorded_at = ev.recorded_at
        tenant = ev.tenant
        event_id = str(ev.id)  # once: UUID.__str__ is Python code
        owner: str | None
        if isinstance(ev, SessionCreated):
            key = (tenant, ev.aggregate_id)
            if self.session(key) is not None:
                raise PoisonEvent(entry, f"session {ev.aggregate_id} already exists in the read model")
            owner = ev.payload.user_id
            self.sessions[key] = SessionRecord(
                tenant=tenant,
                session_id=ev.aggregate_id,
                user_id=owner,
                metadata=ev.payload.metadata,
                created_at=recorded_at,
                updated_at=recorded_at,
                message_count=0,
                version=ev.version,
            )
        else:
            session: SessionRecord | None = None
            if ev.aggregate_kind == "session":
                key = (tenant, ev.aggregate_id)
                session = self.session(key)
                if session is None:
                    raise PoisonEvent(entry, f"session {ev.aggregate_id} does not exist in the read model")
                session = msgspec.structs.replace(session, version=ev.version, updated_at=recorded_at)
                self.sessions[key] = session
            owner = self._apply(entry, ev, session, event_id)
        self.archive.append(
            ArchiveRow(
                partition=entry.partition,
                position=entry.position,
                event_id=event_id,
                type=entry.type,
                tenant=tenant,
                aggregate_kind=ev.aggregate_kind,
                aggregate_id=ev.aggregate_id,
                version=ev.version,
                user_id=owner,
                actor_kind=ev.actor.kind,
                actor_id=ev.actor.id,
                correlation_id=ev.correlation_id,
                causation_id=ev.causation_id,
                occurred_at=ev.occurred_at,
                recorded_at=recorded_at,
                data=entry.data,
            )
        )

    def _apply(
        self, entry: RawEntry, ev: AnyEvent, session: SessionRecord | None, event_id: str
    ) -> str | None:
        """Every event but session.created; ``session`` is the (already bumped) session of a session
        aggregate. Returns the user the event concerns."""
        tenant = ev.tenant
        assert ev.recorded_at is not None
        recorded_at = ev.recorded_at
        if isinstance(ev, MessagesAdded):
            assert session is not None
            if not session.deleted:
                key = (tenant, session.session_id)
                start = session.message_count
                added = [
                    MessageRecord(
                        seq=start + i,
                        role=m.role,
                        content=m.content,
                        name=m.name,
                        tool_calls=msgspec.to_builtins(m.tool_calls) if m.tool_calls is not None else None,
                        tool_call_id=m.tool_call_id,
                        timestamp=m.timestamp or epoch_ms(ev.occurred_at),
                        metadata=m.metadata,
                        event_id=event_id,
                    )
                    for i, m in enumerate(ev.payload.messages, 1)
                ]
                self.messages.setdefault(key, []).extend(added)
                self.sessions[key] = msgspec.structs.replace(session, message_count=start + len(added))
                self.message_count += len(added)
            return session.user_id
        if isinstance(ev, SessionDeleted):
            assert session is not None
            if not session.deleted:
                key = (tenant, session.session_id)
                self.sessions[key] = msgspec.structs.replace(session, deleted=True)
                self.message_count -= len(self.messages.pop(key, ()))
                self.purged.add(key)
                self._clear((tenant, session.user_id, session.session_id))
                if ev.payload.reason == FORGET_REASON:
                    # Erased by its own event, in its own partition: a rebuild replaying partitions in any
                    # order removes it too (user.forgotten, in another partition, may come first).
                    self._erase(key)
            return session.user_id
        if isinstance(ev, MemorySaved | MemoryDeleted | MemoryCleared):
            p = ev.payload
            scope = p.session_id or USER_SCOPE
            if p.session_id is not None:
                scoped = session if session is not None else self.session((tenant, p.session_id))
                if scoped is None:
                    raise PoisonEvent(entry, f"session {p.session_id} does not exist in the read model")
                if scoped.deleted:  # never resurrect the memory of a deleted session
                    return p.user_id
            if isinstance(ev, MemoryCleared):
                self._clear((tenant, p.user_id, scope))
            elif isinstance(ev, MemoryDeleted):
                self.memories[(tenant, p.user_id, scope, ev.payload.key)] = None
            else:
                saved = ev.payload
                mkey = (tenant, saved.user_id, scope, saved.key)
                current = self.memory(mkey)
                self.memories[mkey] = MemoryRecord(
                    user_id=saved.user_id,
                    session_id=saved.session_id,
                    key=saved.key,
                    value=saved.value,
                    version=current.version + 1 if current is not None else 1,
                    created_at=current.created_at if current is not None else recorded_at,
                    updated_at=recorded_at,
                )
            return p.user_id
        if isinstance(ev, UserForgotten):
            user = ev.payload.user_id
            self.forgotten.add((tenant, user))
            for mkey in [k for k in self.memories if k[:2] == (tenant, user)]:
                del self.memories[mkey]
            for skey, s in list(self.sessions.items()):
                if s.tenant == tenant and s.user_id == user and s.deleted:
                    self._erase(skey)
            return user
        raise PoisonEvent(entry, f"no projection for event type {entry.type!r}")  # pragma: no cover

    def _erase(self, key: SessionKey) -> None:
        self.sessions.pop(key, None)
        self.erased.add(key)

    def _clear(self, scope: ScopeKey) -> None:
        self.cleared.add(scope)
        for key in [k for k in self.memories if k[:3] == scope]:
            del self.memories[key]

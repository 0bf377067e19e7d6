"""``sessions recover-log``: restore the log's state from the archive after Redis lost it.

The append script checks every write against state it keeps in Redis: each aggregate's version, latest
position, owner, deletion, message count, tool calls and memory keys, and each user's scoped-sessions set
(``events.keys``). A Redis restarted empty (or one that lost its last writes) has lost that state: a write
would restart versions at 1, and another user could take over an existing session id. The service detects
it (``EventLog.setup`` with the read models' checkpoints; a config gone under a running process) and refuses
writes with 503 ``log_state_lost``. This command:

1. marks the log lost (writes refused while it runs, whatever state it was in);
2. folds, partition by partition and in order, what the read models hold (the archive and the dead letters:
   both were acknowledged, so both counted in the versions) and then whatever the stream still holds after
   that (entries not projected yet), into the state the script would have;
3. writes that state back (``events.state.restore``), and makes each stream generate ids after the last one
   folded, so the projectors (whose checkpoints are there) see what comes next;
4. marks the log restored. Versions then continue with no gap and no duplicate, and owners hold.

It is idempotent: a run cut short is run again. The event ids of the dedup window get their idempotency keys
back, so a retry of an append acknowledged before the loss appends nothing (a retried append of several
events is answered with its first event's version and position: the archive does not say which events went
together). Not restored: what the lost Redis held that was never projected (gone with it).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import msgspec

from events.codec import RawEntry, decode_entry
from events.errors import UndecodableEvent
from events.log import EventLog, position_key
from events.schema import (
    AnyEvent,
    MemoryCleared,
    MemoryDeleted,
    MemorySaved,
    MessagesAdded,
    SessionCreated,
    SessionDeleted,
    UserForgotten,
)
from events.state import AggregateSnapshot, IdempotencyRecord, restore
from projections.api import ReadModel

__all__ = ["LogState", "RecoveryResult", "recover_log"]

AggregateKey = tuple[str, str, str]  # tenant, kind, id


class _Envelope(msgspec.Struct):
    """What an entry that does not decode still says about where it belongs (its version counted)."""

    aggregate_kind: str
    aggregate_id: str
    tenant: str = "default"


@dataclass
class LogState:
    """The script's state, folded from entries in each partition's order."""

    aggregates: dict[AggregateKey, AggregateSnapshot] = field(default_factory=dict)
    # (tenant, user) -> session id -> ms of the latest session-scoped save there
    scoped: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)
    forgotten: dict[tuple[str, str], int] = field(default_factory=dict)  # (tenant, user) -> ms, latest
    last: dict[int, str] = field(default_factory=dict)  # partition -> last position folded
    events: int = 0
    unreadable: int = 0  # entries whose aggregate could not even be read (not counted anywhere)
    # The dedup window (``window_s`` up to ``now_ms``): its events get their idempotency keys back.
    now_ms: int | None = None
    window_s: int = 0
    idempotency: list[IdempotencyRecord] = field(default_factory=list)

    def _aggregate(self, tenant: str, kind: str, aggregate_id: str) -> AggregateSnapshot:
        key = (tenant, kind, aggregate_id)
        found = self.aggregates.get(key)
        if found is None:
            found = self.aggregates[key] = AggregateSnapshot(
                tenant=tenant, kind=kind, aggregate_id=aggregate_id
            )
        return found

    def fold(self, entry: RawEntry) -> None:
        """One entry, in its partition's order (what append.lua did when it appended it)."""
        if position_key(entry.position) <= position_key(self.last.get(entry.partition)):
            return  # already folded (the archive and the stream overlap)
        self.last[entry.partition] = entry.position
        self.events += 1
        try:
            ev = decode_entry(entry)
        except UndecodableEvent:
            try:
                env = msgspec.json.decode(entry.data, type=_Envelope)
            except (msgspec.DecodeError, msgspec.ValidationError):
                self.unreadable += 1
                return
            snap = self._aggregate(env.tenant, env.aggregate_kind, env.aggregate_id)
            snap.version, snap.position = max(snap.version, entry.version), entry.position
            return
        snap = self._aggregate(ev.tenant, ev.aggregate_kind, ev.aggregate_id)
        snap.version, snap.position = max(snap.version, entry.version), entry.position
        ms = position_key(entry.position)[0]
        self._fold_event(snap, ev, ms)
        if self.now_ms is not None and ms > self.now_ms - self.window_s * 1000:
            self._remember(entry, snap, str(ev.id), ev.tenant, ms)

    def _remember(
        self, entry: RawEntry, snap: AggregateSnapshot, event_id: str, tenant: str, ms: int
    ) -> None:
        """The event's own append result (an append of several events is answered, on a retry, with its
        first event's: which events went together the archive does not say)."""
        result: dict[str, object] = {
            "partition": entry.partition,
            "version": entry.version,
            "position": entry.position,
            "appended": True,
            "removed": 0,
            "event_ids": [event_id],
            "aggregate": f"{tenant}:{snap.kind}:{snap.aggregate_id}",  # the script checks a retry by it
        }
        if snap.kind == "session":
            result["message_count"] = snap.message_count
        assert self.now_ms is not None
        ttl = self.window_s - (self.now_ms - ms) // 1000
        self.idempotency.append(
            IdempotencyRecord(
                partition=entry.partition,
                tenant=tenant,
                event_id=event_id,
                result=msgspec.json.encode(result),
                ttl_s=int(ttl),
            )
        )

    def _fold_event(self, snap: AggregateSnapshot, ev: AnyEvent, ms: int) -> None:
        if isinstance(ev, SessionCreated):
            snap.user_id = ev.payload.user_id
        elif isinstance(ev, MessagesAdded):
            for m in ev.payload.messages:
                for c in m.tool_calls or ():
                    snap.tool_calls[c.id] = "0"
                if m.role == "tool" and m.tool_call_id is not None:
                    snap.tool_calls[m.tool_call_id] = "1"
            snap.message_count += len(ev.payload.messages)
        elif isinstance(ev, SessionDeleted):
            snap.deleted = True
            snap.memory_keys.clear()
        elif isinstance(ev, MemorySaved):
            snap.memory_keys.add(ev.payload.key)
            if ev.payload.session_id is not None:
                by_session = self.scoped.setdefault((ev.tenant, ev.payload.user_id), {})
                by_session[ev.payload.session_id] = max(ms, by_session.get(ev.payload.session_id, 0))
        elif isinstance(ev, MemoryDeleted):
            snap.memory_keys.discard(ev.payload.key)
        elif isinstance(ev, MemoryCleared):
            snap.memory_keys.clear()
        elif isinstance(ev, UserForgotten):
            snap.memory_keys.clear()
            who = (ev.tenant, ev.payload.user_id)
            self.forgotten[who] = max(ms, self.forgotten.get(who, 0))

    def scoped_sets(self) -> dict[tuple[str, str], list[str]]:
        """Each user's scoped sessions; an erasure deleted the set, so what was saved before it is left out
        (across partitions the only order is time: a superset is harmless, the set's contract)."""
        out: dict[tuple[str, str], list[str]] = {}
        for who, sessions in self.scoped.items():
            since = self.forgotten.get(who, -1)
            out[who] = sorted(sid for sid, ms in sessions.items() if ms >= since)
        for who in self.forgotten:
            out.setdefault(who, [])
        return out


@dataclass(frozen=True)
class RecoveryResult:
    partitions: int
    events: int  # entries folded (archive, dead letters, and the stream's unprojected tail)
    aggregates: int
    unreadable: int
    seconds: float

    def __str__(self) -> str:
        return (
            f"{self.events} events of {self.partitions} partitions folded into {self.aggregates} aggregates"
            f" in {self.seconds:.1f}s"
            + (f" ({self.unreadable} unreadable entries skipped)" if self.unreadable else "")
        )


async def _entries(log: EventLog, read_model: ReadModel, partition: int, batch: int) -> Iterable[RawEntry]:
    out: list[RawEntry] = []
    after: str | None = None
    while chunk := await read_model.replay(partition, after, batch):
        out.extend(chunk)
        after = chunk[-1].position
    tail = after or "0-0"
    while chunk := await log.read(partition, after=tail, count=batch):
        out.extend(chunk)
        tail = chunk[-1].position
    return out


async def recover_log(
    log: EventLog,
    read_model: ReadModel,
    *,
    progress: Callable[[int, int], None] | None = None,
    batch: int = 2000,
) -> RecoveryResult:
    """Restore the log's state from the read models' archive (see the module docstring). ``progress`` is
    called with (events folded, events in the archive) as it goes."""
    started = time.monotonic()
    await log.mark_state(lost=True)
    total = int(await read_model.replay_size())
    # The log's clock, not this machine's: the positions (and the dedup window) are Redis' time.
    state = LogState(now_ms=await log.now_ms(), window_s=log.settings.dedup_window_s)
    for p in range(log.partitions):
        for entry in await _entries(log, read_model, p, batch):
            state.fold(entry)
            if progress is not None and state.events % 1000 == 0:
                progress(state.events, max(total, state.events))
    if progress is not None:
        progress(state.events, max(total, state.events))
    written = await restore(
        log, state.aggregates.values(), state.scoped_sets(), state.last, idempotency=state.idempotency
    )
    await log.mark_state(lost=False)
    return RecoveryResult(
        partitions=log.partitions,
        events=state.events,
        aggregates=written,
        unreadable=state.unreadable,
        seconds=time.monotonic() - started,
    )

"""The read-model contract: records, pages, the queries the service needs, and the write side projectors use.

Two implementations keep this contract (``projections.memory.InMemoryReadModel`` for the embedded default and
fast tests; ``projections.postgres.PostgresReadModel`` for production) and one contract test suite runs
against both (``tests/projections/contract*.py``, which each backend's tests subclass).

Conventions
-----------
* Every query is scoped by ``tenant``.
* Times come from the log, never from a clock: ``created_at`` is the ``recorded_at`` of the session's
  ``session.created`` event, ``updated_at`` that of its latest event. Applying events is deterministic, so an
  incremental build and a rebuild are identical row for row.
* Cursors are opaque strings. A page's ``next_cursor`` is passed back as ``after`` to continue in the same
  order; ``None`` means the last page. ``before`` pages the other way. Pages are stable while rows are added.
* Message ``seq`` numbers a session's messages 1, 2, 3, ... in log order.
* Positions are stream entry ids (``"<ms>-<n>"``) per partition; compare them with ``position_key``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, Literal

import msgspec

from events.codec import RawEntry
from events.positions import position_key

__all__ = [
    "PROJECTION",
    "AuditFilter",
    "AuditPage",
    "AuditRecord",
    "BatchOutcome",
    "CatchUp",
    "Checkpoint",
    "DeadLetter",
    "MemoryRecord",
    "MessagePage",
    "MessageRecord",
    "Order",
    "ReadModel",
    "SessionPage",
    "SessionRecord",
    "position_key",
]

# The one projection: sessions, messages, memories and the archive, applied together.
PROJECTION = "read_models"
Order = Literal["asc", "desc"]


class SessionRecord(msgspec.Struct, frozen=True, kw_only=True):
    tenant: str
    session_id: str
    user_id: str
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    message_count: int
    version: int  # the session aggregate's version last applied
    deleted: bool = False


class MessageRecord(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    seq: int
    role: str
    content: str | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None
    timestamp: int = 0  # epoch ms: the message's own, or the event's occurred_at when it had none
    metadata: dict[str, Any] | None = None
    event_id: str = ""


class MemoryRecord(msgspec.Struct, frozen=True, kw_only=True):
    user_id: str
    session_id: str | None  # None: user scope
    key: str
    value: Any
    version: int  # 1 on first save of the key in its scope, +1 on every later save
    created_at: datetime
    updated_at: datetime


class AuditRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One archived event with its envelope and position: the audit trail."""

    partition: int
    position: str
    event_id: str
    type: str
    tenant: str
    aggregate_kind: str
    aggregate_id: str
    version: int
    user_id: str | None  # the user the event concerns (session owner or memory user)
    actor_kind: str
    actor_id: str
    correlation_id: str | None
    causation_id: str | None
    occurred_at: datetime
    recorded_at: datetime
    payload: dict[str, Any]


class MessagePage(msgspec.Struct, frozen=True, kw_only=True):
    messages: list[MessageRecord]
    total: int  # messages in the whole session
    next_cursor: str | None = None


class SessionPage(msgspec.Struct, frozen=True, kw_only=True):
    sessions: list[SessionRecord]
    next_cursor: str | None = None


class AuditPage(msgspec.Struct, frozen=True, kw_only=True):
    events: list[AuditRecord]
    next_cursor: str | None = None


class AuditFilter(msgspec.Struct, frozen=True, kw_only=True):
    tenant: str = "default"
    session_id: str | None = None  # events of that session aggregate
    user_id: str | None = None  # events concerning that user (sessions they own, their memory)
    types: Sequence[str] | None = None
    since: datetime | None = None  # recorded_at >= since
    until: datetime | None = None  # recorded_at < until
    actor_kind: str | None = None
    actor_id: str | None = None


class Checkpoint(msgspec.Struct, frozen=True, kw_only=True):
    partition: int
    position: str | None  # the last stream entry applied; None: nothing yet
    epoch: int  # the fencing epoch of the lease that wrote it
    updated_at: datetime | None = None


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    partition: int
    position: str
    type: str
    data: bytes
    error: str
    attempts: int
    created_at: datetime
    retried: bool = False
    version: int = 0  # the aggregate version the log assigned to the entry (a rebuild replays it)


class BatchOutcome(msgspec.Struct, frozen=True, kw_only=True):
    position: str  # the new checkpoint
    applied: int  # events applied
    messages: int  # messages written
    dead_lettered: int = 0
    skipped: int = 0  # entries the (aggregate, version) guard found already applied (and did not apply again)


CatchUp = Callable[[dict[int, Checkpoint]], Awaitable[None]]
"""``switch_to``'s hook: called with the live checkpoints while the live writers are held off."""


class ReadModel(ABC):
    """Everything the service (queries, ``readyz``), the projectors, a rebuild and the CLI ask of a read
    model.

    Abstract: each backend implements all of it (nobody above probes with ``getattr``), and one contract
    suite (``tests/projections/contract*.py``) holds every backend to it."""

    # -- lifecycle -----------------------------------------------------------------------------------------
    @abstractmethod
    async def close(self) -> None:
        """Release what the read model holds (a pool it opened). Idempotent."""

    @abstractmethod
    async def pending_migrations(self) -> list[int]:
        """Versions of the shipped migrations the store lacks (empty: up to date; always empty in memory).
        Raises ``ReadModelUnavailable`` when the store cannot be reached."""

    # -- queries ---------------------------------------------------------------------------------------
    @abstractmethod
    async def get_session(self, tenant: str, session_id: str) -> SessionRecord | None:
        """The session, deleted or not (``deleted`` says); None if never created."""

    @abstractmethod
    async def list_sessions(
        self, tenant: str, user_id: str, *, limit: int = 50, after: str | None = None
    ) -> SessionPage:
        """A user's live sessions, most recently updated first."""

    @abstractmethod
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
        """A page of a live session's messages. ``limit`` None or 0: all. ``offset`` skips that many in the
        chosen order (the original API); ``after``/``before`` are keyset cursors."""

    @abstractmethod
    async def get_memory(
        self,
        tenant: str,
        user_id: str,
        *,
        session_id: str | None = None,
        merged: bool = False,
        key: str | None = None,
    ) -> dict[str, MemoryRecord]:
        """No session_id: the user scope. session_id: that session's scope, or with ``merged`` both scopes,
        the session's value winning. ``key``: only that key (an empty dict when missing)."""

    @abstractmethod
    async def audit(self, flt: AuditFilter, *, limit: int = 100, after: str | None = None) -> AuditPage:
        """Archived events matching the filter, oldest first (recorded_at, then partition and position)."""

    @abstractmethod
    async def checkpoints(self, projection: str = PROJECTION) -> dict[int, Checkpoint]:
        """The checkpoint of every partition that has one."""

    @abstractmethod
    async def dead_letters(self, *, limit: int = 100, include_retried: bool = False) -> list[DeadLetter]:
        """Dead letters, oldest first; ``limit`` 0: all."""

    # -- write side (projectors) -----------------------------------------------------------------------
    @abstractmethod
    async def apply_batch(
        self,
        partition: int,
        entries: Sequence[RawEntry],
        *,
        expected: str | None,
        epoch: int,
        projection: str = PROJECTION,
    ) -> BatchOutcome:
        """Apply entries of one partition (in order, all after ``expected``) and move the checkpoint to the
        last one, in ONE transaction. The checkpoint update is a compare-and-set on (``expected``, an epoch
        not newer than ``epoch``): if another writer moved it or holds a newer epoch, nothing is written and
        ``projections.errors.FencedOut`` is raised. A unique (aggregate, version) guard refuses a double
        apply: an entry whose event is already applied (a checkpoint behind its data) is skipped and counted
        in ``skipped``; another event at an applied (aggregate, version) is poison (an event id may recur: it
        is an idempotency key of the log, per partition and for a window).
        An entry that cannot be decoded or applied raises ``projections.errors.PoisonEvent`` naming it, with
        nothing written; the caller retries and then calls ``dead_letter``."""

    @abstractmethod
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
        """Record a poison entry and move the checkpoint past it, in one transaction (same CAS)."""

    # -- rebuild (projections.rebuild) -----------------------------------------------------------------
    @abstractmethod
    async def replay(self, partition: int, after: str | None, limit: int) -> list[RawEntry]:
        """What this read model holds of a partition after ``after``, in order, at most ``limit``: its
        archived events and its (not retried) dead letters, as the stream entries they came from."""

    @abstractmethod
    async def replay_size(self) -> int:
        """How many entries ``replay`` yields over every partition from the start."""

    @abstractmethod
    async def open_shadow(self, *, fresh: bool = False) -> ReadModel:
        """An empty read model of the same kind to rebuild into, beside this one. The shadow of an
        unfinished rebuild is kept (its checkpoints are the rebuild's progress) unless ``fresh``."""

    @abstractmethod
    async def switch_to(
        self, shadow: ReadModel, projection: str = PROJECTION, *, catch_up: CatchUp | None = None
    ) -> None:
        """Serve ``shadow``'s state from now on: the one ``open_shadow`` returned.

        Invisible to readers: first every writer of this model is held off (a batch waits; reads go on),
        then ``catch_up`` is awaited with this model's checkpoints as they now stand, to bring the shadow
        at least as far (``projections.rebuild`` applies the missing entries), then the state is swapped in
        one step and the writers let go. So the served state never goes back: no checkpoint moves
        backwards, and a read that saw a checkpoint before the swap finds at least those rows after it.
        The checkpoints keep the shadow's positions and take the newest fencing epoch of either side, so a
        projector holding a lease goes on (if the shadow went further, it is refused once on the position
        and reloads). If ``catch_up`` raises, nothing is swapped and the error propagates."""

    # -- the users' wrapped data keys (service.keyring): kept beside the read models, not a projection ----
    @abstractmethod
    async def load_data_key(self, tenant: str, user_id: str) -> tuple[str, bytes] | None:
        """(key id, the key wrapped under the deployment's KEK), or None."""

    @abstractmethod
    async def save_data_key(
        self, tenant: str, user_id: str, key_id: str, wrapped: bytes
    ) -> tuple[str, bytes]:
        """Store the key unless the user has one; return the one stored (a racing writer's, maybe). A
        rebuild's switch carries the keys over as they are."""

    @abstractmethod
    async def delete_data_key(self, tenant: str, user_id: str) -> bool:
        """Delete the user's key (erasure); True if there was one."""

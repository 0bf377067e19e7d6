"""Errors of the read models.

Every error carries a stable ``code`` (see ``events.errors.SessionsError``). Driver errors (psycopg) are
converted once, by ``projections.driver`` (``raise ... from e``), so callers never see them.

    SessionsError (events.errors)
    ├── InvalidEvent (events.errors)
    │   └── InvalidCursor              a page cursor that this read model did not hand out
    ├── Unavailable (events.errors)
    │   └── ReadModelUnavailable       PostgreSQL cannot be reached, the connection broke, or it did not
    │                                  answer within the bound (``query_timeout_s``, ``write_timeout_s``);
    │                                  retryable, and the batch in flight was rolled back whole (never torn)
    └── ReadModelError                 base of what the read models raise on purpose
        ├── FencedOut                  the checkpoint compare-and-set failed: another writer moved it, or
        │   │                          holds a newer fencing epoch; nothing was written
        │   └── AlreadyApplied         the archive's unique (aggregate, version) or event id refused a batch
        │                              the guard lookup let through (rows and checkpoint disagree)
        ├── PoisonEvent                an entry cannot be decoded or applied; names it; nothing was written
        │   └── UnwritableBatch        the database refused a batch (a value out of range): no entry named;
        │                              the projector splits the batch to find it
        ├── InvalidBatch               the caller broke the contract of apply_batch (wrong partition, order)
        └── MigrationError             a migration failed, or an applied migration was edited afterwards
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from events.codec import RawEntry
from events.errors import InvalidEvent, SessionsError, Unavailable

__all__ = [
    "AlreadyApplied",
    "FencedOut",
    "InvalidBatch",
    "InvalidCursor",
    "MigrationError",
    "PoisonEvent",
    "ReadModelError",
    "ReadModelUnavailable",
    "UnwritableBatch",
]


class ReadModelError(SessionsError):
    code = "read_model_error"


class FencedOut(ReadModelError):
    """``details``: ``partition``, ``expected`` and ``position`` (what the caller expected, what is stored),
    ``epoch`` and ``stored_epoch``."""

    code = "fenced_out"


class AlreadyApplied(FencedOut):
    code = "already_applied"


class PoisonEvent(ReadModelError):
    """An entry that cannot be decoded or applied. ``entry`` and ``position`` name it; ``reason`` says why."""

    code = "poison_event"

    def __init__(self, entry: RawEntry, reason: str, **details: Any) -> None:
        super().__init__(
            f"entry {entry.position} of partition {entry.partition} ({entry.type or 'no type'}): {reason}",
            partition=entry.partition,
            position=entry.position,
            type=entry.type,
            **details,
        )
        self.entry = entry
        self.position = entry.position
        self.reason = reason


class UnwritableBatch(PoisonEvent):
    """The database refused to store a batch that decoded and applied cleanly (a value out of a column's
    range, a driver conversion error). It does not say which entry: the projector splits the batch until
    the entry is alone, then retries and dead-letters it like any poison entry."""

    code = "unwritable_batch"

    def __init__(self, partition: int, entries: Sequence[RawEntry], reason: str) -> None:
        first, last = (entries[0].position, entries[-1].position) if entries else (None, None)
        ReadModelError.__init__(
            self,
            f"partition {partition}: the batch {first}..{last} could not be stored: {reason}",
            partition=partition,
        )
        self.entry = entries[0] if len(entries) == 1 else None  # type: ignore[assignment]
        self.position = self.entry.position if self.entry else None  # type: ignore[assignment]
        self.reason = reason


class InvalidBatch(ReadModelError):
    code = "invalid_batch"


class MigrationError(ReadModelError):
    code = "migration_error"


class InvalidCursor(InvalidEvent):
    code = "invalid_cursor"


class ReadModelUnavailable(Unavailable):
    code = "read_model_unavailable"

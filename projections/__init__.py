"""The read models: sessions, messages, memories, the event archive (audit), checkpoints and dead letters.

* ``projections.api``: the contract (records, pages, ``ReadModel``) that the service and projectors use;
* ``projections.apply``: applying events, pure (shared by every backend);
* ``projections.memory.InMemoryReadModel``: the embedded default;
* ``projections.postgres.PostgresReadModel``: PostgreSQL (``projections.store`` holds its SQL), with
  ``projections.migrations``;
* ``projections.settings``: ``ReadModelSettings.from_env()`` and ``open_read_model``;
* ``projections.rebuild.rebuild``: rebuild from the archive and the log, then switch over;
* ``projections.errors``: what they raise.

``projections.postgres`` (and its pool) is not imported here: the embedded default never loads it.
"""

from .api import (
    PROJECTION,
    AuditFilter,
    AuditPage,
    AuditRecord,
    BatchOutcome,
    Checkpoint,
    DeadLetter,
    MemoryRecord,
    MessagePage,
    MessageRecord,
    ReadModel,
    SessionPage,
    SessionRecord,
    position_key,
)
from .errors import (
    AlreadyApplied,
    FencedOut,
    InvalidBatch,
    InvalidCursor,
    MigrationError,
    PoisonEvent,
    ReadModelError,
    ReadModelUnavailable,
)
from .memory import InMemoryReadModel
from .rebuild import RebuildProgress, RebuildResult, rebuild
from .settings import ReadModelSettings, open_read_model

__all__ = [
    "PROJECTION",
    "AlreadyApplied",
    "AuditFilter",
    "AuditPage",
    "AuditRecord",
    "BatchOutcome",
    "Checkpoint",
    "DeadLetter",
    "FencedOut",
    "InMemoryReadModel",
    "InvalidBatch",
    "InvalidCursor",
    "MemoryRecord",
    "MessagePage",
    "MessageRecord",
    "MigrationError",
    "PoisonEvent",
    "ReadModel",
    "ReadModelError",
    "ReadModelSettings",
    "ReadModelUnavailable",
    "RebuildProgress",
    "RebuildResult",
    "SessionPage",
    "SessionRecord",
    "open_read_model",
    "position_key",
    "rebuild",
]

"""The read models: sessions, messages, memories, the event archive (audit), checkpoints and dead letters.

* ``projections.api``: the contract (records, pages, ``ReadModel``) that the service and projectors use;
* ``projections.apply``: applying events, pure (shared by every backend);
* ``projections.memory.InMemoryReadModel``: the embedded default;
* ``projections.postgres.PostgresReadModel``: PostgreSQL (``projections.store`` holds its SQL,
  ``projections.postgres_batch`` its write transactions), with ``projections.migrations``;
* ``projections.settings``: ``ReadModelSettings.from_env()`` and ``open_read_model``;
* ``projections.rebuild.rebuild``: rebuild from the archive and the log, then switch over;
* ``projections.errors``: what they raise.

``projections.postgres`` (and its pool) is not imported here: the embedded default never loads it.

``projections.rebuild`` is the module (its entry point: ``projections.rebuild.rebuild``). The names below load
on first use (PEP 562): importing ``projections.api`` (the records, shared with the SDK) loads no driver.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from events import lazy

if TYPE_CHECKING:
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
    from .rebuild import RebuildProgress, RebuildResult
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
]

_HOME: dict[str, str] = {
    **dict.fromkeys(
        [
            "PROJECTION",
            "AuditFilter",
            "AuditPage",
            "AuditRecord",
            "BatchOutcome",
            "Checkpoint",
            "DeadLetter",
            "MemoryRecord",
            "MessagePage",
            "MessageRecord",
            "ReadModel",
            "SessionPage",
            "SessionRecord",
            "position_key",
        ],
        "api",
    ),
    **dict.fromkeys(
        [
            "AlreadyApplied",
            "FencedOut",
            "InvalidBatch",
            "InvalidCursor",
            "MigrationError",
            "PoisonEvent",
            "ReadModelError",
            "ReadModelUnavailable",
        ],
        "errors",
    ),
    "InMemoryReadModel": "memory",
    **dict.fromkeys(["RebuildProgress", "RebuildResult"], "rebuild"),
    **dict.fromkeys(["ReadModelSettings", "open_read_model"], "settings"),
}


def __getattr__(name: str) -> Any:
    return lazy.load(__name__, _HOME, name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})

"""Trimming the Redis streams below what the read models (and the event archive, applied in the same
transaction) have durably committed, optionally keeping a window of the newest entries.

A partition without a checkpoint is never trimmed: nothing of it is archived yet.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from events.driver import redis_errors
from events.log import EventLog
from projections.api import PROJECTION, ReadModel, position_key

__all__ = ["TrimResult", "next_position", "trim_partitions"]


class TrimResult(msgspec.Struct, frozen=True, kw_only=True):
    partition: int
    checkpoint: str | None
    min_id: str | None  # entries below it were removed; None: the partition was left alone
    removed: int
    remaining: int


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def next_position(position: str) -> str:
    """The smallest entry id after ``position``: XTRIM MINID removes ids strictly below it."""
    ms, _, seq = position.partition("-")
    return f"{ms}-{int(seq or 0) + 1}"


async def trim_partitions(
    log: EventLog,
    read_model: ReadModel,
    *,
    projection: str = PROJECTION,
    keep: int | None = None,
    keep_seconds: float | None = None,
    progress: Callable[[TrimResult], None] | None = None,
) -> list[TrimResult]:
    """Trim every partition to its checkpoint (or less, keeping ``keep`` entries / ``keep_seconds``)."""
    if keep is not None and keep < 0:
        raise ValueError("keep must be zero or more")
    if keep_seconds is not None and keep_seconds < 0:
        raise ValueError("keep_seconds must be zero or more")
    checkpoints = await read_model.checkpoints(projection)
    results = []
    with redis_errors():
        secs, micros = await log.redis.time()
        now_ms = int(secs) * 1000 + int(micros) // 1000
        for p in range(log.partitions):
            key = log.keys.log(p)
            cp = checkpoints.get(p)
            min_id: str | None = next_position(cp.position) if cp and cp.position else None
            if min_id is not None and keep:
                newest: list[Any] = await log.redis.xrevrange(key, count=keep) or []
                if len(newest) < keep:
                    min_id = None
                else:
                    oldest_kept = _text(newest[-1][0])
                    if position_key(oldest_kept) < position_key(min_id):
                        min_id = oldest_kept
            if min_id is not None and keep_seconds is not None:
                window = f"{max(0, now_ms - int(keep_seconds * 1000))}-0"
                if position_key(window) < position_key(min_id):
                    min_id = window
            removed = (
                int(await log.redis.xtrim(key, minid=min_id, approximate=False)) if min_id is not None else 0
            )
            result = TrimResult(
                partition=p,
                checkpoint=cp.position if cp else None,
                min_id=min_id,
                removed=removed,
                remaining=int(await log.redis.xlen(key)),
            )
            results.append(result)
            if progress is not None:
                progress(result)
    return results

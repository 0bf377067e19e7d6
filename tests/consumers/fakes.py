"""A proxy over any read model that records every committed batch (so tests can count double applies) and
injects outages: the next ``outages`` calls fail as if PostgreSQL were down, before reaching the model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from events.codec import RawEntry
from projections.api import PROJECTION, BatchOutcome, Checkpoint, DeadLetter
from projections.errors import ReadModelUnavailable


class Recording:
    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.applied: list[tuple[int, str]] = []  # (partition, position) of every committed entry, in order
        self.outages = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _outage(self) -> None:
        if self.outages > 0:
            self.outages -= 1
            raise ReadModelUnavailable("PostgreSQL is down (injected)")

    async def checkpoints(self, projection: str = PROJECTION) -> dict[int, Checkpoint]:
        self._outage()
        result: dict[int, Checkpoint] = await self.inner.checkpoints(projection)
        return result

    async def apply_batch(
        self,
        partition: int,
        entries: Sequence[RawEntry],
        *,
        expected: str | None,
        epoch: int,
        projection: str = PROJECTION,
    ) -> BatchOutcome:
        self._outage()
        out: BatchOutcome = await self.inner.apply_batch(
            partition, entries, expected=expected, epoch=epoch, projection=projection
        )
        self.applied.extend((partition, e.position) for e in entries)
        return out

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
        self._outage()
        pos: str = await self.inner.dead_letter(
            partition, entry, error, attempts=attempts, expected=expected, epoch=epoch, projection=projection
        )
        return pos

    async def dead_letters(self, *, limit: int = 100, include_retried: bool = False) -> list[DeadLetter]:
        letters: list[DeadLetter] = await self.inner.dead_letters(
            limit=limit, include_retried=include_retried
        )
        return letters

"""A small read model that keeps the write-side contract of ``projections.api.ReadModel`` (checkpoint
compare-and-set with fencing epochs, the (aggregate, version) guard, poison entries, dead letters) and records
every apply, so tests can count double applies. Faults are injected through its attributes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from events.codec import RawEntry, decode_entry
from events.errors import UndecodableEvent
from projections.api import PROJECTION, BatchOutcome, Checkpoint, DeadLetter
from projections.errors import AlreadyApplied, FencedOut, PoisonEvent, ReadModelUnavailable


class FakeReadModel:
    def __init__(self) -> None:
        self.cps: dict[tuple[str, int], Checkpoint] = {}
        self.applied: list[tuple[int, str]] = []  # (partition, position), in commit order
        self.versions: set[tuple[str, str, str, int]] = set()
        self.letters: list[DeadLetter] = []
        self.outages = 0  # the next calls that fail as if PostgreSQL were down
        self.calls = 0

    def _outage(self) -> None:
        self.calls += 1
        if self.outages > 0:
            self.outages -= 1
            raise ReadModelUnavailable("PostgreSQL is down (injected)")

    def _cas(self, projection: str, partition: int, expected: str | None, epoch: int) -> None:
        cp = self.cps.get((projection, partition))
        stored, stored_epoch = (cp.position, cp.epoch) if cp else (None, 0)
        if stored != expected or stored_epoch > epoch:
            raise FencedOut("checkpoint moved", partition=partition, expected=expected, position=stored)

    async def checkpoints(self, projection: str = PROJECTION) -> dict[int, Checkpoint]:
        self._outage()
        return {p: cp for (proj, p), cp in self.cps.items() if proj == projection}

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
        self._cas(projection, partition, expected, epoch)
        keys = []
        messages = 0
        for entry in entries:
            try:
                event = decode_entry(entry)
            except UndecodableEvent as e:
                raise PoisonEvent(entry, str(e)) from e
            key = (event.tenant, event.aggregate_kind, event.aggregate_id, entry.version)
            if key in self.versions or key in keys:
                raise AlreadyApplied("double apply refused", partition=partition)
            keys.append(key)
            messages += len(getattr(event.payload, "messages", []) or [])
        self.versions.update(keys)
        self.applied.extend((partition, e.position) for e in entries)
        self.cps[(projection, partition)] = Checkpoint(
            partition=partition, position=entries[-1].position, epoch=epoch
        )
        return BatchOutcome(position=entries[-1].position, applied=len(entries), messages=messages)

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
        self._cas(projection, partition, expected, epoch)
        self.letters.append(
            DeadLetter(
                id=len(self.letters) + 1,
                partition=partition,
                position=entry.position,
                type=entry.type,
                data=entry.data,
                error=error,
                attempts=attempts,
                created_at=datetime.now(UTC),
            )
        )
        self.cps[(projection, partition)] = Checkpoint(
            partition=partition, position=entry.position, epoch=epoch
        )
        return entry.position

    async def dead_letters(self, *, limit: int = 100, include_retried: bool = False) -> list[DeadLetter]:
        return [d for d in self.letters if include_retried or not d.retried][:limit]

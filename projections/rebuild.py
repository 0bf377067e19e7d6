"""Rebuild the read models from zero: from the archive plus the tail of the live stream, into new tables, then
switch over in one transaction (blue/green).

Use::

    from projections.rebuild import rebuild

    result = await rebuild(read_model, log, progress=show, batch=1000, resume=True)

* ``read_model``: the live read model (any ``projections.api.ReadModel``); it keeps serving, and its
  projectors keep applying, for the whole rebuild (they wait only while the switch catches up).
* ``log``: the ``events.EventLog``.
* ``progress``: called after every batch with one ``RebuildProgress``: ``done`` and ``total`` events,
  ``rate`` (events/s), ``eta_s`` (seconds left, None while unknown) and ``phase`` (``"archive"``, ``"log"``,
  ``"switch"``, ``"done"``). ``total`` is the archive's size (plus dead letters) when the rebuild starts;
  events that arrive meanwhile raise it as they are read, so ``done <= total`` always holds. A CLI draws it
  with ``progress=lambda p: bar.update(p.done, p.total)``.
* ``batch``: entries per transaction.
* ``resume``: continue an unfinished rebuild from where it stopped (its progress checkpoint is the shadow's
  own checkpoints), or, with False, drop it and start over.

Returns a ``RebuildResult``. Cancel it like any coroutine (``task.cancel()``, Ctrl-C): each batch is one
transaction, so the shadow holds whole batches, and ``resume=True`` continues from there.

How: the shadow (PostgreSQL: the schema ``<schema>__rebuild``, migrated; in memory: a second model) is fed,
partition by partition, with the live model's archive and dead letters (``replay``), then with the log after
the last archived position; every batch goes through the shadow's ``apply_batch``, the same pure apply as
the projectors, so the result equals the incremental build row for row. An entry that is still poison is
dead-lettered in the shadow; one that a fix made applicable is applied. When the shadow has caught up with
the log's heads (checked again until a pass finds little left, or no less than the pass before),
``switch_to`` holds the live writers off, the rest (what the live projectors applied meanwhile) is replayed
into the shadow up to the live checkpoints, and the shadow is swapped in, in ONE transaction, with its
checkpoints (what the new tables hold) and the live checkpoints' fencing epochs. No reader can tell: every
checkpoint is where it was or further, and the rows with it. A projector goes on from the same position (if
the rebuild read further in the log than it had, its next batch is refused once on the position, and it
reloads the checkpoint).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import msgspec

from events.codec import RawEntry
from events.log import EventLog

from .api import PROJECTION, Checkpoint, ReadModel, position_key
from .errors import PoisonEvent, ReadModelError

__all__ = ["RebuildProgress", "RebuildResult", "rebuild"]

REBUILD_EPOCH = 0  # the shadow has one writer, the rebuild; the switch carries the live epochs over


class RebuildProgress(msgspec.Struct, frozen=True, kw_only=True):
    done: int
    total: int
    rate: float  # events per second since the start of this run
    eta_s: float | None  # seconds left at that rate; None while unknown
    phase: str


class RebuildResult(msgspec.Struct, frozen=True, kw_only=True):
    events: int  # entries applied (or dead-lettered) by this run
    dead_lettered: int
    seconds: float
    positions: dict[int, str | None]  # the checkpoints the new tables hold

    def __str__(self) -> str:
        return f"{self.events} events in {self.seconds:.1f}s, {self.dead_lettered} dead-lettered"


class _Run:
    """One rebuild run's counters and its progress reports."""

    def __init__(self, total: int, done: int, progress: Callable[[RebuildProgress], object] | None) -> None:
        self.started = time.monotonic()
        self.total = total
        self.done = done
        self.applied = 0
        self.dead_lettered = 0
        self._progress = progress

    def report(self, phase: str) -> None:
        self.total = max(self.total, self.done)
        if self._progress is None:
            return
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = self.applied / elapsed
        eta = (self.total - self.done) / rate if rate > 0 else None
        self._progress(RebuildProgress(done=self.done, total=self.total, rate=rate, eta_s=eta, phase=phase))


async def _apply(
    shadow: ReadModel,
    partition: int,
    entries: list[RawEntry],
    position: str | None,
    run: _Run,
    projection: str,
) -> str | None:
    """Apply entries to the shadow; a poison entry is dead-lettered there (once: it fails the same way on
    every try) and the rest goes on. Returns the new position."""
    while entries:
        try:
            outcome = await shadow.apply_batch(
                partition, entries, expected=position, epoch=REBUILD_EPOCH, projection=projection
            )
        except PoisonEvent as e:
            i = next((k for k, entry in enumerate(entries) if entry.position == e.position), 0)
            if i > 0:  # the entries before it first (they may hold poison of their own)
                position = await _apply(shadow, partition, entries[:i], position, run, projection)
            position = await shadow.dead_letter(
                partition,
                entries[i],
                e.message,
                attempts=1,
                expected=position,
                epoch=REBUILD_EPOCH,
                projection=projection,
            )
            run.done += 1
            run.applied += 1
            run.dead_lettered += 1
            entries = entries[i + 1 :]
            continue
        run.done += len(entries)
        run.applied += len(entries)
        return outcome.position
    return position


async def rebuild(
    read_model: ReadModel,
    log: EventLog,
    *,
    progress: Callable[[RebuildProgress], object] | None = None,
    batch: int = 1000,
    resume: bool = True,
    projection: str = PROJECTION,
) -> RebuildResult:
    """Rebuild ``read_model`` from its archive and ``log``, then switch over. See the module docstring."""
    if batch < 1:
        raise ValueError("batch must be at least 1")
    shadow = await read_model.open_shadow(fresh=not resume)
    checkpoints = await shadow.checkpoints(projection)
    positions: dict[int, str | None] = {
        p: (checkpoints[p].position if p in checkpoints else None) for p in range(log.partitions)
    }
    run = _Run(total=await read_model.replay_size(), done=await shadow.replay_size(), progress=progress)
    run.report("archive")
    previous: int | None = None
    while True:
        heads = await log.heads()
        this_pass = 0
        for p in range(log.partitions):
            # Up to this pass's head (or, where the log holds nothing, to the end of the archive): a pass is
            # bounded, even while the live projectors keep archiving faster than this reads.
            while heads.get(p) is None or _behind(positions[p], heads.get(p)):
                # The archive first (it holds what the log may have trimmed), then the log after it.
                entries = await read_model.replay(p, positions[p], batch)
                phase = "archive"
                if not entries:
                    if not _behind(positions[p], heads.get(p)):
                        break
                    entries = await log.read(p, after=positions[p] or "0-0", count=batch)
                    phase = "log"
                    if not entries:
                        break
                positions[p] = await _apply(shadow, p, entries, positions[p], run, projection)
                this_pass += len(entries)
                run.report(phase)
                # Yield to the loop after every batch: an in-memory rebuild never waits on I/O, and must
                # neither starve the service it runs in nor ignore a cancellation.
                await asyncio.sleep(0)
        # Close enough to the heads, or no closer than the pass before (writers as fast as this): the switch
        # applies the rest, up to the live checkpoints, and the projectors go on from there.
        if this_pass < batch or (previous is not None and this_pass >= previous):
            break
        previous = this_pass
    run.report("switch")

    async def catch_up(live: dict[int, Checkpoint]) -> None:
        # The live writers are held off now: bring the shadow to where the live model stands, so the switch
        # takes nothing away from a reader (see ``ReadModel.switch_to``).
        for p, cp in sorted(live.items()):
            while _behind(positions.get(p), cp.position):
                entries = await read_model.replay(p, positions.get(p), batch)
                if not entries:  # not archived (cannot happen: every checkpoint move archives or letters)
                    entries = await log.read(p, after=positions.get(p) or "0-0", count=batch)
                if not entries:
                    raise ReadModelError(
                        f"rebuild: partition {p} cannot be brought to the live checkpoint {cp.position}:"
                        " neither the archive nor the log holds the entries; nothing was switched"
                    )
                positions[p] = await _apply(shadow, p, entries, positions.get(p), run, projection)

    await read_model.switch_to(shadow, projection, catch_up=catch_up)
    run.report("done")
    return RebuildResult(
        events=run.applied,
        dead_lettered=run.dead_lettered,
        seconds=time.monotonic() - run.started,
        positions=positions,
    )


def _behind(position: str | None, head: str | None) -> bool:
    return head is not None and position_key(position) < position_key(head)

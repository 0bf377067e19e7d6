"""The projector worker: owns partitions through leases, reads each in order from its checkpoint, and applies
batches to a read model, where the writes and the checkpoint commit in one transaction.

Failure handling, in one place:

* ``FencedOut``: another writer moved the checkpoint. If it wrote with a newer epoch the partition is
  no longer ours and is dropped; otherwise (our own commit whose reply was lost, or an older owner finishing
  its last batch) the worker reloads the checkpoint and goes on from there. Either way nothing is applied
  twice: the checkpoint compare-and-set refuses a batch that does not start where the last one ended.
* ``PoisonEvent``: the batch shrinks around the bad entry (the entries before it are applied), the bad
  entry is retried alone up to ``max_attempts`` times, then dead-lettered (which moves the checkpoint past
  it) and the partition goes on.
* Outages (Redis or the read model unreachable): wait with exponential backoff and retry the same entries;
  nothing is ever skipped. Leases may lapse meanwhile; fencing keeps a late writer harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from events.codec import RawEntry
from events.errors import Unavailable
from events.log import START, EventLog
from projections.api import PROJECTION, ReadModel, position_key
from projections.errors import FencedOut, PoisonEvent

from .errors import NotCaughtUp
from .leases import Lease, LeaseManager, quota, rebalance_plan
from .status import PartitionStatus, partition_status

__all__ = ["OUTAGES", "OnCommit", "Projector", "ProjectorStats", "default_worker_id", "host_prefix"]

log = logging.getLogger("consumers.projector")

# What "the other side is down" looks like: retried with backoff, never skipped. The log (events.driver) and
# the read model (projections.driver) translate their drivers' failures into it: ReadModelUnavailable is one.
OUTAGES: tuple[type[BaseException], ...] = (Unavailable,)


OnCommit = Callable[[int, str], object]
"""Called with (partition, new checkpoint position) after each commit of this worker (a batch or a dead
letter): how ``service.app`` wakes the reads waiting on that position (``Consistency.notify``)."""


def host_prefix() -> str:
    """What every default worker id of this host (in a container: of this container) starts with."""
    return f"{socket.gethostname()}-"


def default_worker_id() -> str:
    return f"{host_prefix()}{os.getpid()}-{os.urandom(2).hex()}"


class ProjectorStats(msgspec.Struct, kw_only=True):
    """Counters since the worker started (for metrics and the burst result)."""

    batches: int = 0
    applied: int = 0
    messages: int = 0
    dead_lettered: int = 0
    poison_retries: int = 0
    fenced: int = 0
    outages: int = 0
    acquired: int = 0
    released: int = 0


def _poison_index(error: PoisonEvent, entries: Sequence[RawEntry]) -> int | None:
    """Which entry the read model named, if it did (by position, or by the entry itself)."""
    position = getattr(error, "position", None)
    entry = getattr(error, "entry", None)
    if position is None and isinstance(entry, RawEntry):
        position = entry.position
    if position is None:
        details: dict[str, Any] = getattr(error, "details", None) or {}
        position = details.get("position")
    for i, e in enumerate(entries):
        if e.position == position:
            return i
    return None


class Projector:
    """A worker of one projection. Use ``run(stop)`` for a long-lived worker (in-process or as a process) and
    ``run_until_caught_up()`` for a burst that returns once every partition has reached its head.
    ``on_commit`` hears of every checkpoint this worker moves, right after the commit (it must not raise or
    block)."""

    def __init__(
        self,
        log: EventLog,
        read_model: ReadModel,
        *,
        worker_id: str | None = None,
        projection: str = PROJECTION,
        batch_size: int = 2000,
        block_ms: int = 200,
        lease_ttl_ms: int = 5000,
        max_attempts: int = 3,
        backoff_initial_s: float = 0.05,
        backoff_max_s: float = 5.0,
        concurrency: int = 4,
        on_commit: OnCommit | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.concurrency = concurrency  # partitions applied at once (each on its own connection)
        self.log = log
        self.read_model = read_model
        self.on_commit = on_commit
        self.worker_id = worker_id or default_worker_id()
        self.projection = projection
        self.batch_size = batch_size
        # A blocking read must end well before the leases need renewing.
        self.block_ms = max(1, min(block_ms, lease_ttl_ms // 4))
        self.max_attempts = max_attempts
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.leases = LeaseManager(
            log.redis,
            log.keys,
            log.partitions,
            projection=projection,
            worker_id=self.worker_id,
            ttl_ms=lease_ttl_ms,
        )
        self.maintain_interval_s = lease_ttl_ms / 3000
        self.stats = ProjectorStats()
        self.workers: list[str] = []
        self._owned: dict[int, Lease] = {}
        self._positions: dict[int, str | None] = {}
        self._attempts: dict[tuple[int, str], int] = {}
        self._next_maintain = 0.0
        # Set once the first lease round has been tried (whatever its outcome): a host that starts an
        # in-process projector can wait for it before it calls itself ready.
        self.first_round = asyncio.Event()

    # -- public -------------------------------------------------------------------------------------------
    @property
    def owned(self) -> dict[int, Lease]:
        return dict(self._owned)

    @property
    def positions(self) -> dict[int, str | None]:
        return dict(self._positions)

    async def run(self, stop: asyncio.Event) -> None:
        """Project until ``stop`` is set; then finish the batch in hand, release the leases and return."""
        backoff = self.backoff_initial_s
        try:
            while not stop.is_set():
                try:
                    await self._tick(self.block_ms, stop)
                    backoff = self.backoff_initial_s
                except OUTAGES as e:
                    self.stats.outages += 1
                    log.warning("projector %s: %s; retrying in %.2fs", self.worker_id, e, backoff)
                    await _sleep_or_stop(stop, backoff)
                    backoff = min(backoff * 2, self.backoff_max_s)
        finally:
            await self.shutdown()

    async def run_until_caught_up(self, *, timeout_s: float | None = None) -> ProjectorStats:
        """Take this worker's share of the partitions and project them; return once EVERY partition's
        checkpoint has reached its head (read before the checkpoints), whoever projected it, then release.

        Partitions that other workers own are left to them; those of dead workers are taken over when their
        heartbeats and leases expire (the quotas grow as the dead leave the live set). Outages are retried.
        After ``timeout_s`` (None: never), ``NotCaughtUp`` names the partitions still behind."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        backoff = self.backoff_initial_s
        self._next_maintain = 0.0
        behind: list[int] | None = None
        try:
            while True:
                if deadline is not None and time.monotonic() > deadline:
                    raise await self._not_caught_up(timeout_s, behind)
                try:
                    if await self._tick(None, None):
                        continue
                    behind = await self.behind()
                    backoff = self.backoff_initial_s
                except OUTAGES as e:
                    self.stats.outages += 1
                    log.warning("projector %s: %s; retrying in %.2fs", self.worker_id, e, backoff)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, self.backoff_max_s)
                    continue
                if not behind:
                    return self.stats
                # Others still project them, or hold leases that are about to be released or to expire.
                self._next_maintain = 0.0
                await asyncio.sleep(min(0.1, self.maintain_interval_s))
        finally:
            await self.shutdown()

    async def behind(self) -> list[int]:
        """The partitions whose checkpoint is short of the log's head. The heads are read first: an empty
        answer means everything appended before this call is applied."""
        heads = await self.log.heads()
        checkpoints = await self.read_model.checkpoints(self.projection)
        out = []
        for p, head in sorted(heads.items()):
            cp = checkpoints.get(p)
            if head is not None and position_key(cp.position if cp else None) < position_key(head):
                out.append(p)
        return out

    async def _not_caught_up(self, timeout_s: float | None, last: list[int] | None) -> NotCaughtUp:
        try:
            behind = await self.behind()
        except OUTAGES as e:
            if last is None:
                return NotCaughtUp(
                    f"did not catch up within {timeout_s}s: the log or the read model is unreachable ({e})",
                    behind=None,
                )
            behind = last
        listed = ", ".join(map(str, behind))
        return NotCaughtUp(
            f"did not catch up within {timeout_s}s: partitions {listed} are behind their heads "
            f"(worker {self.worker_id} owns {sorted(self._owned) or 'none'})",
            behind=behind,
        )

    async def shutdown(self) -> None:
        """Release every lease and withdraw from the worker set, so others take over at once."""
        try:
            for lease in list(self._owned.values()):
                await self.leases.release(lease)
                self.stats.released += 1
            await self.leases.leave()
        except OUTAGES as e:
            log.warning(
                "projector %s: could not release its leases (%s); they expire on their own", self.worker_id, e
            )
        self._owned.clear()
        self._positions.clear()

    async def lag(self) -> list[PartitionStatus]:
        """Per partition: head, checkpoint, lag in events and seconds, owner (see ``consumers.status``)."""
        return await partition_status(self.log, self.read_model, projection=self.projection)

    # -- the loop -----------------------------------------------------------------------------------------
    async def _tick(self, block_ms: int | None, stop: asyncio.Event | None) -> int:
        """One round: maintain leases when due, read the owned partitions once, apply. Entries read."""
        now = time.monotonic()
        if now >= self._next_maintain:
            try:
                await self.maintain()
            finally:
                self.first_round.set()
            # Short of its share, a worker looks again soon: a partition another worker released (or whose
            # lease expired) must not wait a whole period for its new owner.
            hungry = len(self._owned) < quota(self.worker_id, self.workers, self.log.partitions)
            self._next_maintain = now + (
                min(0.1, self.maintain_interval_s) if hungry else self.maintain_interval_s
            )
        if not self._owned:
            if stop is not None:  # nothing to read: wait for the next lease round (sooner when hungry)
                await _sleep_or_stop(stop, max(0.0, self._next_maintain - time.monotonic()))
            return 0
        positions = {p: self._positions.get(p) or START for p in sorted(self._owned)}
        batches = await self.log.read_many(positions, count=self.batch_size, block_ms=block_ms)
        work = [(p, batches[p]) for p in sorted(batches) if p in self._owned and batches[p]]
        if self.concurrency == 1 or len(work) == 1:
            for p, entries in work:
                await self._apply(p, entries)
        else:
            # Partitions are independent: while one batch waits on PostgreSQL, the next is decoded and
            # folded. Every batch runs to its end before an error is raised, so no apply is left in flight
            # when the caller backs off and reads again.
            gate = asyncio.Semaphore(self.concurrency)

            async def one(p: int, entries: Sequence[RawEntry]) -> None:
                async with gate:
                    await self._apply(p, entries)

            results = await asyncio.gather(*(one(p, e) for p, e in work), return_exceptions=True)
            for r in results:
                if isinstance(r, BaseException):
                    raise r
        return sum(len(e) for _, e in work)

    async def maintain(self) -> None:
        """Heartbeat, renew held leases (dropping lost ones), then release above or acquire up to quota."""
        self.workers = await self.leases.heartbeat()
        for p, lease in list(self._owned.items()):
            renewed = await self.leases.renew(lease)
            if renewed is None:
                log.info("projector %s: lost the lease of partition %d", self.worker_id, p)
                self._drop(p)
            else:
                self._owned[p] = renewed
        want = quota(self.worker_id, self.workers, self.log.partitions)
        if len(self._owned) > want:
            release, _ = rebalance_plan(self.worker_id, self.workers, self.log.partitions, self._owned, {})
            for p in release:
                lease = self._owned[p]
                self._drop(p)
                await self.leases.release(lease)
                self.stats.released += 1
            return
        if len(self._owned) == want:
            return
        states = await self.leases.states()
        _, candidates = rebalance_plan(self.worker_id, self.workers, self.log.partitions, self._owned, states)
        if not candidates:
            return
        checkpoints = await self.read_model.checkpoints(self.projection)
        for p in candidates:
            if len(self._owned) >= want:
                break
            cp = checkpoints.get(p)
            got = await self.leases.acquire(p, min_epoch=cp.epoch if cp else 0)
            if got is not None:
                self._owned[p] = got
                self._positions[p] = cp.position if cp else None
                self.stats.acquired += 1
                log.info("projector %s: acquired partition %d (epoch %d)", self.worker_id, p, got.epoch)

    def _drop(self, partition: int) -> None:
        self._owned.pop(partition, None)
        self._positions.pop(partition, None)
        for key in [k for k in self._attempts if k[0] == partition]:
            del self._attempts[key]

    async def _apply(self, partition: int, entries: Sequence[RawEntry]) -> None:
        """Apply entries in order, shrinking around poison entries. Outages propagate (the caller retries
        from the position reached, which only moves on a commit)."""
        chunks: list[Sequence[RawEntry]] = [entries]
        while chunks:
            lease = self._owned.get(partition)
            if lease is None:
                return
            chunk = chunks.pop(0)
            try:
                outcome = await self.read_model.apply_batch(
                    partition,
                    chunk,
                    expected=self._positions.get(partition),
                    epoch=lease.epoch,
                    projection=self.projection,
                )
            except FencedOut:
                self.stats.fenced += 1
                # Either the partition is dropped or the position reloaded: the next read starts over from it.
                before = self._positions.get(partition)
                if await self._after_fenced(partition, lease) and self._positions.get(partition) == before:
                    # Refused although nothing moved (the read model's guard): do not spin on it.
                    await asyncio.sleep(self.backoff_initial_s)
                return
            except PoisonEvent as e:
                chunks[0:0] = await self._split_poison(partition, chunk, e)
                continue
            self._positions[partition] = outcome.position
            if self.on_commit is not None:
                self.on_commit(partition, outcome.position)
            if self._attempts:  # an entry that failed before and went through on a retry
                for entry in chunk:
                    self._attempts.pop((partition, entry.position), None)
            self.stats.batches += 1
            self.stats.applied += outcome.applied
            self.stats.messages += outcome.messages
            self.stats.dead_lettered += outcome.dead_lettered

    async def _split_poison(
        self, partition: int, chunk: Sequence[RawEntry], error: PoisonEvent
    ) -> list[Sequence[RawEntry]]:
        """The chunks to try next, in order, after ``chunk`` raised ``error``."""
        idx = _poison_index(error, chunk)
        if idx is None:
            if len(chunk) > 1:
                mid = len(chunk) // 2
                return [chunk[:mid], chunk[mid:]]
            idx = 0
        bad = chunk[idx]
        key = (partition, bad.position)
        attempts = self._attempts.get(key, 0) + 1
        self._attempts[key] = attempts
        before, after = chunk[:idx], chunk[idx + 1 :]
        if attempts < self.max_attempts:
            self.stats.poison_retries += 1
            await asyncio.sleep(min(self.backoff_initial_s * attempts, self.backoff_max_s))
            return [c for c in (before, [bad], after) if c]
        if before:
            # The bad entry is dead-lettered only once the entries before it are applied (in order).
            return [before, [bad], after] if after else [before, [bad]]
        lease = self._owned[partition]
        try:
            await self.read_model.dead_letter(
                partition,
                bad,
                str(error),
                attempts=attempts,
                expected=self._positions.get(partition),
                epoch=lease.epoch,
                projection=self.projection,
            )
        except FencedOut:
            self.stats.fenced += 1
            await self._after_fenced(partition, lease)
            return []
        log.warning(
            "projector %s: dead-lettered %s of partition %d after %d attempts: %s",
            self.worker_id,
            bad.position,
            partition,
            attempts,
            error,
        )
        del self._attempts[key]
        self._positions[partition] = bad.position
        if self.on_commit is not None:
            self.on_commit(partition, bad.position)
        self.stats.dead_lettered += 1
        return [after] if after else []

    async def _after_fenced(self, partition: int, lease: Lease) -> bool:
        """Reload the checkpoint after a refused compare-and-set. False: the partition is another's now."""
        cp = (await self.read_model.checkpoints(self.projection)).get(partition)
        if cp is not None and cp.epoch > lease.epoch:
            log.info(
                "projector %s: fenced out of partition %d (epoch %d > %d)",
                self.worker_id,
                partition,
                cp.epoch,
                lease.epoch,
            )
            self._drop(partition)
            return False
        self._positions[partition] = cp.position if cp else None
        return True


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)

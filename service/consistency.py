"""Read-your-writes: a read waits, bounded, until the read model has applied what it must see.

A target is a set of ``partition -> stream entry id``: the position an aggregate had in the log when the read
began (``EventLog.aggregate``), every partition's head for reads that span aggregates (a user's sessions, the
audit trail), or positions a client passed back from its own writes. The read model's checkpoint of a
partition is the last entry it applied, so ``checkpoint >= target`` means the write is visible.

Waiting never sleeps long: an in-process projector notifies (``Consistency.notify`` is its ``on_commit``
callback: see ``service.app``) and wakes every waiter at once; without one, the checkpoints are polled with a
short backoff (1 ms doubling to 20 ms), and concurrent waiters share one checkpoint query. After the bound the
read fails with ``NotCaughtUp`` (HTTP 503 with Retry-After), never with stale data; a read model that does not
answer the checkpoint query within the bound (stopped, frozen) fails it with ``ReadModelUnavailable`` at the
bound, not when the server comes back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

from events.positions import Positions, format_positions, merge_positions, parse_positions, position_key
from projections.api import PROJECTION, Checkpoint, ReadModel
from projections.errors import ReadModelUnavailable
from service.errors import NotCaughtUp

__all__ = [
    "Consistency",
    "Positions",
    "format_positions",
    "merge_positions",
    "parse_positions",
]

_MIN_POLL_S = 0.001
_MAX_POLL_S = 0.02
_SLOW_S = 0.5  # a checkpoint query outstanding this long (or half the bound) means the read model is stuck


class Consistency:
    """Waits until the read model's checkpoints reach target positions."""

    def __init__(self, read_model: ReadModel, timeout_s: float = 2.0, projection: str = PROJECTION) -> None:
        self.read_model = read_model
        self.timeout_s = timeout_s
        self.projection = projection
        self._seen: dict[int, tuple[int, int]] = {}
        self._changed: asyncio.Event | None = None
        self._refreshing: asyncio.Task[None] | None = None
        self._refresh_started = 0.0

    def missing(self, target: Mapping[int, str]) -> Positions:
        """The part of ``target`` the read model is not known to have applied yet."""
        return {p: pos for p, pos in target.items() if self._seen.get(p, (0, 0)) < position_key(pos)}

    def notify(self, partition: int, position: str | None) -> None:
        """A projector in this process moved a checkpoint: wake the waiters."""
        if not position:
            return
        key = position_key(position)
        if key > self._seen.get(partition, (0, 0)):
            self._seen[partition] = key
        if self._changed is not None:
            changed, self._changed = self._changed, None
            changed.set()

    async def refresh(self, timeout_s: float | None = None) -> None:
        """Read the checkpoints once; concurrent callers share the one query. A caller waits for it at most
        ``timeout_s`` (then ``ReadModelUnavailable``): the query itself is never cancelled (cancelling a
        statement waits for the server, which a frozen server never gives), it ends within the read model's
        own bound, and the callers that come meanwhile share it instead of piling up more."""
        task = self._refreshing
        if task is None:
            task = asyncio.create_task(self._read_checkpoints(), name="checkpoint refresh")
            self._refreshing = task
            self._refresh_started = time.monotonic()
            task.add_done_callback(self._refreshed)
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout_s)
        except TimeoutError:
            waited = time.monotonic() - self._refresh_started
            raise ReadModelUnavailable(
                f"the read model did not answer the checkpoint query within {waited:.1f} s",
                code="read_model_unavailable",
                waited_s=round(waited, 3),
            ) from None

    async def _read_checkpoints(self) -> None:
        checkpoints: Mapping[int, Checkpoint] = await self.read_model.checkpoints(self.projection)
        for p, cp in checkpoints.items():
            self.notify(p, cp.position)

    def _refreshed(self, task: asyncio.Task[None]) -> None:
        if self._refreshing is task:
            self._refreshing = None
        if not task.cancelled():
            task.exception()  # retrieved: the callers that waited raise it; nobody else must be told

    async def wait(self, target: Mapping[int, str | None], timeout_s: float | None = None) -> None:
        """Return once every target position is applied; raise ``NotCaughtUp`` after the bound, or
        ``ReadModelUnavailable`` if the read model does not answer within it (stopped, frozen)."""
        wanted = {p: pos for p, pos in target.items() if pos}
        if not wanted or not self.missing(wanted):
            return
        timeout = self.timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout
        interval = _MIN_POLL_S
        while True:
            # A notification may already have moved the known checkpoints: only query when still behind.
            behind = self.missing(wanted)
            if behind:
                try:
                    await self.refresh(max(0.0, deadline - time.monotonic()))
                except ReadModelUnavailable as e:
                    # A query that was only started at the very end is a projection behind, not an outage.
                    if e.details.get("waited_s", timeout) >= min(timeout / 2, _SLOW_S):
                        raise
                behind = self.missing(wanted)
            if not behind:
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise NotCaughtUp(
                    f"the read model has not caught up with the log within {timeout:g} s; retry shortly",
                    retry_after=1,
                    partitions=sorted(behind),
                )
            if self._changed is None:
                self._changed = asyncio.Event()
            changed = self._changed
            try:
                await asyncio.wait_for(changed.wait(), min(interval, remaining))
            except TimeoutError:
                interval = min(interval * 2, _MAX_POLL_S)

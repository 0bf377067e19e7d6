"""Read-your-writes: a read waits, bounded, until the read model has applied what it must see.

A target is a set of ``partition -> stream entry id``: the position an aggregate had in the log when the read
began (``EventLog.aggregate``), every partition's head for reads that span aggregates (a user's sessions, the
audit trail), or positions a client passed back from its own writes. The read model's checkpoint of a
partition is the last entry it applied, so ``checkpoint >= target`` means the write is visible.

Waiting never sleeps long: an in-process projector notifies (``Consistency.notify`` is its ``on_commit``
callback: see ``service.app``) and wakes every waiter at once; without one, the checkpoints are polled with a
short backoff (1 ms doubling to 20 ms), and concurrent waiters share one checkpoint query. After the bound the
read fails with ``NotCaughtUp`` (HTTP 503 with Retry-After), never with stale data.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

from events.positions import Positions, format_positions, merge_positions, parse_positions, position_key
from projections.api import PROJECTION, Checkpoint, ReadModel
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


class Consistency:
    """Waits until the read model's checkpoints reach target positions."""

    def __init__(self, read_model: ReadModel, timeout_s: float = 2.0, projection: str = PROJECTION) -> None:
        self.read_model = read_model
        self.timeout_s = timeout_s
        self.projection = projection
        self._seen: dict[int, tuple[int, int]] = {}
        self._changed: asyncio.Event | None = None
        self._refreshing: asyncio.Future[None] | None = None

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

    async def refresh(self) -> None:
        """Read the checkpoints once; concurrent callers share the one query."""
        if self._refreshing is not None:
            shared = self._refreshing
            try:
                await asyncio.shield(shared)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if shared.cancelled() and task is not None and not task.cancelling():
                    return  # the request that ran the query was cancelled, not this one: poll again
                raise
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._refreshing = fut
        try:
            checkpoints: Mapping[int, Checkpoint] = await self.read_model.checkpoints(self.projection)
        except asyncio.CancelledError:
            fut.cancel()
            raise
        except Exception as e:
            fut.set_exception(e)
            fut.exception()  # retrieved here: this caller raises it, the sharers get it from the future
            raise
        finally:
            self._refreshing = None
        for p, cp in checkpoints.items():
            self.notify(p, cp.position)
        fut.set_result(None)

    async def wait(self, target: Mapping[int, str | None], timeout_s: float | None = None) -> None:
        """Return once every target position is applied; raise ``NotCaughtUp`` after the bound."""
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
                await self.refresh()
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

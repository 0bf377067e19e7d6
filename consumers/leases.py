"""Partition leases with fencing epochs, worker heartbeats, and the fair share each worker should own.

A lease is one Redis string per partition and projection (``Keys.lease``) holding ``"<epoch> <until_ms>
<owner>"``. The key never expires: an expired lease is one whose ``until_ms`` lies in the past by the Redis
clock (``TIME`` inside the scripts, so workers with skewed clocks agree). Keeping the key keeps the epoch, so
the epoch only ever grows: every acquire (a first one, a take-over of an expired lease, a forced steal, a
restarted worker taking back its own) increments it; only a renewal keeps it. The epoch is the fencing
token the read model checks in its checkpoint compare-and-set, so a worker that lost its lease while paused
cannot write after the new owner did.

Workers announce themselves in a sorted set (``Keys.workers``) scored by the Redis time their heartbeat
expires. The live members, ranked by name, give each worker its quota: ``P // N`` partitions, one more for
the first ``P % N`` of them. The rank must not depend on who looks: ranked by heartbeat score, each worker
saw its own fresh heartbeat last and took ``P // N``, and ``P % N`` partitions had no owner for ever. Ranked
by name, every worker computes the same quotas, they add up to ``P``, and they change only when the set of
live workers does (no flapping). A worker above its quota releases leases; one below it takes free or expired
ones. Leases stay where they are when the quota allows (sticky), so a join or leave moves only what it must.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import msgspec
import redis.asyncio as aioredis

from events.driver import redis_errors
from events.keys import Keys

__all__ = ["Lease", "LeaseManager", "LeaseState", "quota", "rebalance_plan"]

# Redis time in ms, then the lease value parsed; shared by the three lease scripts.
_PRELUDE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local epoch, until_ms, owner = 0, 0, false
local cur = redis.call('GET', KEYS[1])
if cur then
  local e, u, o = string.match(cur, '^(%d+) (%d+) (.*)$')
  if e then epoch, until_ms, owner = tonumber(e), tonumber(u), o end
end
local function put(ep, u, o) redis.call('SET', KEYS[1], string.format('%d %d %s', ep, u, o)) end
"""

# ARGV: owner, ttl_ms, min_epoch, force ('1' takes the lease even from a live owner). Acquiring a lease one
# already holds also bumps the epoch: a caller that acquires has lost track of it (a restart under the same
# worker id), and whatever incarnation still writes with the old epoch must be fenced. Renew extends.
# Reply: {epoch, until_ms, owner, now}: the lease after the call; the caller owns it iff the owner matches.
_ACQUIRE = (
    _PRELUDE
    + """
local me, ttl, min_epoch = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
if owner and owner ~= me and until_ms > now and ARGV[4] ~= '1' then
  return {epoch, until_ms, owner, now}
end
-- A change of hands: the epoch grows, and stays above any epoch the read model has already seen.
epoch = math.max(epoch, min_epoch) + 1
put(epoch, now + ttl, me)
return {epoch, now + ttl, me, now}
"""
)

# ARGV: owner, epoch, ttl_ms. Reply: the new until_ms, or 0 when the lease changed hands. An expired lease
# nobody took is still ours to renew: no other writer can have used a newer epoch.
_RENEW = (
    _PRELUDE
    + """
if owner == ARGV[1] and epoch == tonumber(ARGV[2]) then
  put(epoch, now + tonumber(ARGV[3]), owner)
  return now + tonumber(ARGV[3])
end
return 0
"""
)

# ARGV: owner, epoch. Expires the lease at once but keeps the epoch. Reply: 1 released, 0 not ours.
_RELEASE = (
    _PRELUDE
    + """
if owner == ARGV[1] and epoch == tonumber(ARGV[2]) then
  put(epoch, 0, owner)
  return 1
end
return 0
"""
)

# KEYS[1] the workers zset. ARGV: worker, ttl_ms, mode ('0' announce, '1' leave, '2' only look).
# Reply: the live workers, by heartbeat expiry (the caller ranks them by name).
_HEARTBEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if ARGV[3] == '1' then
  redis.call('ZREM', KEYS[1], ARGV[1])
elseif ARGV[3] == '0' then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
  redis.call('PEXPIRE', KEYS[1], 10 * tonumber(ARGV[2]))
end
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""


class Lease(msgspec.Struct, frozen=True, kw_only=True):
    """A lease this worker holds."""

    partition: int
    owner: str
    epoch: int
    until_ms: int


class LeaseState(msgspec.Struct, frozen=True, kw_only=True):
    """What Redis says about one partition's lease (for status and rebalancing)."""

    partition: int
    owner: str | None
    epoch: int
    until_ms: int
    live: bool  # held and not expired by the Redis clock


def quota(worker_id: str, workers: Sequence[str], partitions: int) -> int:
    """How many partitions ``worker_id`` should own among the live ``workers`` (in any order: they are ranked
    by name, so every worker computes the same quotas and they add up to ``partitions``)."""
    if worker_id not in workers:
        return 0
    ranked = sorted(set(workers))
    n = len(ranked)
    return partitions // n + (1 if ranked.index(worker_id) < partitions % n else 0)


def rebalance_plan(
    worker_id: str,
    workers: Sequence[str],
    partitions: int,
    owned: Iterable[int],
    states: dict[int, LeaseState],
) -> tuple[list[int], list[int]]:
    """(partitions to release, partitions to try to acquire) that move this worker toward its quota.

    Pure, so the policy is tested without Redis. Free candidates start at an offset that differs per worker,
    so hungry workers do not all race for the same partition first."""
    mine = sorted(owned)
    want = quota(worker_id, workers, partitions)
    if len(mine) > want:
        return mine[want:], []
    # A live lease in this worker's name that it does not hold is a previous incarnation's: take it back.
    free = [
        p for p in range(partitions) if p not in mine and (not states[p].live or states[p].owner == worker_id)
    ]
    if len(mine) == want or not free:
        return [], []
    ranked = sorted(set(workers))
    start = (ranked.index(worker_id) * partitions // len(ranked)) if worker_id in ranked else 0
    free.sort(key=lambda p: (p - start) % partitions)
    return [], free


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class LeaseManager:
    """Leases and heartbeats of one worker for one projection. Outages raise ``events.errors.Unavailable``."""

    def __init__(
        self,
        client: aioredis.Redis,
        keys: Keys,
        partitions: int,
        *,
        projection: str,
        worker_id: str,
        ttl_ms: int = 5000,
    ) -> None:
        if ttl_ms < 100:
            raise ValueError("the lease TTL must be at least 100 ms")
        self.redis = client
        self.keys = keys
        self.partitions = partitions
        self.projection = projection
        self.worker_id = worker_id
        self.ttl_ms = ttl_ms
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._heartbeat = client.register_script(_HEARTBEAT)

    def _key(self, partition: int) -> str:
        return self.keys.lease(partition, self.projection)

    async def _call(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        with redis_errors():
            return await script(keys=keys, args=args)

    async def acquire(self, partition: int, *, min_epoch: int = 0, force: bool = False) -> Lease | None:
        """Take the partition's lease if it is free or expired (or ``force``); None if another holds it.
        ``min_epoch``: the epoch the read model last saw, so a Redis that lost its keys cannot hand out an
        epoch the checkpoint would refuse."""
        epoch, until, owner, _now = await self._call(
            self._acquire,
            [self._key(partition)],
            [self.worker_id, self.ttl_ms, min_epoch, "1" if force else "0"],
        )
        if _text(owner) != self.worker_id:
            return None
        return Lease(partition=partition, owner=self.worker_id, epoch=int(epoch), until_ms=int(until))

    async def renew(self, lease: Lease) -> Lease | None:
        """Extend a held lease; None when it changed hands (the caller must stop writing that partition)."""
        until = int(
            await self._call(
                self._renew, [self._key(lease.partition)], [lease.owner, lease.epoch, self.ttl_ms]
            )
        )
        return msgspec.structs.replace(lease, until_ms=until) if until else None

    async def release(self, lease: Lease) -> bool:
        return bool(await self._call(self._release, [self._key(lease.partition)], [lease.owner, lease.epoch]))

    async def states(self) -> dict[int, LeaseState]:
        """Every partition's lease as Redis has it, judged live by the Redis clock."""
        with redis_errors():
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.time()
                for p in range(self.partitions):
                    pipe.get(self._key(p))
                replies = await pipe.execute()
        secs, micros = replies[0]
        now = int(secs) * 1000 + int(micros) // 1000
        out = {}
        for p, raw in enumerate(replies[1:]):
            owner, epoch, until = None, 0, 0
            if raw:
                ep, u, o = _text(raw).split(" ", 2)
                owner, epoch, until = o, int(ep), int(u)
            out[p] = LeaseState(
                partition=p, owner=owner, epoch=epoch, until_ms=until, live=owner is not None and until > now
            )
        return out

    async def heartbeat(self) -> list[str]:
        """Announce this worker for one TTL; the live workers, sorted by name."""
        members = await self._call(
            self._heartbeat, [self.keys.workers(self.projection)], [self.worker_id, self.ttl_ms, "0"]
        )
        return sorted(_text(m) for m in members)

    async def workers(self) -> list[str]:
        """The live workers, sorted by name, without announcing this one."""
        members = await self._call(
            self._heartbeat, [self.keys.workers(self.projection)], [self.worker_id, self.ttl_ms, "2"]
        )
        return sorted(_text(m) for m in members)

    async def leave(self) -> None:
        """Withdraw the announcement, so the others rebalance at once instead of after a TTL."""
        await self._call(
            self._heartbeat, [self.keys.workers(self.projection)], [self.worker_id, self.ttl_ms, "1"]
        )

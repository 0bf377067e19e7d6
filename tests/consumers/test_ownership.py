"""Every partition has an owner whenever a worker is alive, whatever the number of workers (issue 15 item 2),
and a burst run returns only when every partition is at its head (item 3). In-process workers on fakeredis
and the real Redis, with short leases."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from consumers.errors import NotCaughtUp
from consumers.leases import LeaseManager, quota
from consumers.projector import Projector
from events import EventLog, LogSettings
from projections.api import PROJECTION, position_key
from projections.memory import InMemoryReadModel

from .test_projector import fill

PARTITIONS = 16
TTL_MS = 600


@pytest.fixture
def log_settings(key_prefix: str) -> LogSettings:
    return LogSettings(prefix=key_prefix, partitions=PARTITIONS)


def watcher(log: EventLog) -> LeaseManager:
    return LeaseManager(log.redis, log.keys, log.partitions, projection=PROJECTION, worker_id="watcher")


@pytest.mark.parametrize("n", range(1, 18))
def test_quotas_cover_every_partition_whatever_order_each_worker_sees(n: int) -> None:
    workers = [f"w{i}" for i in range(n)]
    # Each worker reads the live set in its own order (e.g. its own fresh heartbeat last): the quotas must
    # still add up to every partition, and be the same whatever the order.
    for seen in (workers, workers[::-1], *(workers[i:] + workers[:i] for i in range(n))):
        assert quota("w0", seen, PARTITIONS) == quota("w0", workers, PARTITIONS)
    own_view_last = [quota(w, [x for x in workers if x != w] + [w], PARTITIONS) for w in workers]
    assert sum(own_view_last) == PARTITIONS
    assert max(own_view_last) - min(own_view_last) <= 1


async def owners(log: EventLog) -> dict[int, str | None]:
    return {p: (s.owner if s.live else None) for p, s in (await watcher(log).states()).items()}


@pytest.mark.parametrize("n", [3, 4, 5])
async def test_running_workers_own_every_partition_and_stay_put(event_log: EventLog, n: int) -> None:
    rm = InMemoryReadModel()
    workers = [
        Projector(event_log, rm, worker_id=f"w{i}", lease_ttl_ms=TTL_MS, block_ms=50) for i in range(n)
    ]
    stop = asyncio.Event()
    tasks = [asyncio.create_task(w.run(stop)) for w in workers]
    try:
        # They converge: every partition owned, shares that differ by one at most.
        deadline = time.monotonic() + 10
        while True:
            seen = await owners(event_log)
            counts = sorted(len(w.owned) for w in workers)
            names = [w.worker_id for w in workers]
            if None not in seen.values() and all(
                len(w.owned) == quota(w.worker_id, names, PARTITIONS) for w in workers
            ):
                break
            assert time.monotonic() < deadline, f"not converged: owners {seen}, shares {counts}"
            await asyncio.sleep(0.05)
        assert sum(counts) == PARTITIONS and counts[-1] - counts[0] <= 1, counts
        # No flapping: over a few lease periods, nothing changes hands.
        before = await owners(event_log)
        epochs = {p: s.epoch for p, s in (await watcher(event_log).states()).items()}
        await asyncio.sleep(3 * TTL_MS / 1000)
        assert await owners(event_log) == before
        assert {p: s.epoch for p, s in (await watcher(event_log).states()).items()} == epochs
    finally:
        stop.set()
        await asyncio.gather(*tasks)


async def behind(log: EventLog, rm: InMemoryReadModel) -> list[int]:
    heads, cps = await log.heads(), await rm.checkpoints(PROJECTION)
    return [
        p
        for p, h in heads.items()
        if h and position_key(cps[p].position if p in cps else None) < position_key(h)
    ]


async def dead_workers(
    log: EventLog, count: int, ttl_ms: int, heartbeat_ttl_ms: int | None = None
) -> list[int]:
    """Workers that announced themselves and took their share, then died (never renew): the partitions
    they hold. ``heartbeat_ttl_ms``: how long the dead still count as live workers."""
    held = []
    cycle = itertools.cycle(range(count))
    dead = [
        LeaseManager(
            log.redis, log.keys, log.partitions, projection=PROJECTION, worker_id=f"dead{i}", ttl_ms=ttl_ms
        )
        for i in range(count)
    ]
    for m in dead:
        await LeaseManager(
            log.redis,
            log.keys,
            log.partitions,
            projection=PROJECTION,
            worker_id=m.worker_id,
            ttl_ms=heartbeat_ttl_ms or ttl_ms,
        ).heartbeat()
    for p in range(PARTITIONS - 1):  # the last one unowned, as it was before the fix
        assert await dead[next(cycle)].acquire(p) is not None
        held.append(p)
    return held


async def test_a_burst_after_workers_died_returns_only_at_every_head(event_log: EventLog) -> None:
    n = await fill(event_log, 48, 1)
    rm = InMemoryReadModel()
    assert len(await behind(event_log, rm)) >= PARTITIONS - 4
    # Their leases expire before their heartbeats: until then the dead still count toward the fair share.
    await dead_workers(event_log, 3, ttl_ms=500, heartbeat_ttl_ms=1500)
    started = time.monotonic()
    stats = await Projector(event_log, rm, worker_id="burst", lease_ttl_ms=1000).run_until_caught_up(
        timeout_s=30
    )
    elapsed = time.monotonic() - started
    assert await behind(event_log, rm) == [], "the burst said caught up while partitions were behind"
    assert stats.applied == n and stats.acquired == PARTITIONS
    assert elapsed >= 0.5  # it had to wait for the dead workers' leases to expire


async def test_a_burst_that_times_out_names_the_partitions_behind(event_log: EventLog) -> None:
    await fill(event_log, 48, 1)
    rm = InMemoryReadModel()
    held = await dead_workers(event_log, 3, ttl_ms=5000)
    with pytest.raises(NotCaughtUp) as e:
        await Projector(event_log, rm, worker_id="burst", lease_ttl_ms=5000).run_until_caught_up(
            timeout_s=0.5
        )
    still = await behind(event_log, rm)
    assert still and set(still) <= set(held)
    assert e.value.details["behind"] == still
    assert ", ".join(map(str, still)) in e.value.message

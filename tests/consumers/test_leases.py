"""Leases and rebalancing, on fakeredis and the real Redis: acquire, renew, expire, steal, epochs, quotas."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from consumers.leases import Lease, LeaseManager, LeaseState, quota, rebalance_plan
from events import EventLog

PROJECTION = "read_models"


def manager(log: EventLog, worker: str, ttl_ms: int = 5000) -> LeaseManager:
    return LeaseManager(
        log.redis, log.keys, log.partitions, projection=PROJECTION, worker_id=worker, ttl_ms=ttl_ms
    )


async def test_acquire_is_exclusive_and_renew_extends(event_log: EventLog) -> None:
    a, b = manager(event_log, "a"), manager(event_log, "b")
    lease = await a.acquire(3)
    assert lease is not None and lease.epoch == 1 and lease.owner == "a"
    assert await b.acquire(3) is None
    renewed = await a.renew(lease)
    assert renewed is not None and renewed.epoch == 1 and renewed.until_ms >= lease.until_ms
    states = await b.states()
    assert states[3].owner == "a" and states[3].live and states[3].epoch == 1
    # Acquiring again (a restart under the same id) fences the previous incarnation with a new epoch.
    again = await a.acquire(3)
    assert again is not None and again.epoch == 2
    assert await a.renew(lease) is None
    assert not states[2].live and states[2].owner is None


async def test_expired_lease_is_taken_over_with_a_new_epoch(event_log: EventLog) -> None:
    a, b = manager(event_log, "a", ttl_ms=150), manager(event_log, "b", ttl_ms=150)
    old = await a.acquire(0)
    assert old is not None
    await asyncio.sleep(0.3)
    assert not (await b.states())[0].live
    new = await b.acquire(0)
    assert new is not None and new.epoch == old.epoch + 1
    # The old owner cannot renew or release what is now b's.
    assert await a.renew(old) is None
    assert await a.release(old) is False
    assert (await a.states())[0].owner == "b"


async def test_expired_lease_nobody_took_can_still_be_renewed(event_log: EventLog) -> None:
    a = manager(event_log, "a", ttl_ms=120)
    lease = await a.acquire(1)
    assert lease is not None
    await asyncio.sleep(0.25)
    renewed = await a.renew(lease)
    assert renewed is not None and renewed.epoch == lease.epoch
    assert (await a.states())[1].live


async def test_steal_and_release_keep_epochs_growing(event_log: EventLog) -> None:
    a, b = manager(event_log, "a"), manager(event_log, "b")
    first = await a.acquire(5)
    assert first is not None
    stolen = await b.acquire(5, force=True)
    assert stolen is not None and stolen.epoch == first.epoch + 1
    assert await a.renew(first) is None
    assert await b.release(stolen) is True
    assert not (await a.states())[5].live
    back = await a.acquire(5)
    assert back is not None and back.epoch == stolen.epoch + 1


async def test_min_epoch_keeps_the_epoch_above_the_read_models(event_log: EventLog) -> None:
    # A Redis that lost its lease keys must not hand out an epoch the checkpoint has already passed.
    lease = await manager(event_log, "a").acquire(2, min_epoch=41)
    assert lease is not None and lease.epoch == 42


async def test_heartbeats_list_live_workers_and_expire(event_log: EventLog) -> None:
    a, b = manager(event_log, "a", ttl_ms=150), manager(event_log, "b", ttl_ms=150)
    assert await a.heartbeat() == ["a"]
    assert await b.heartbeat() == ["a", "b"]
    assert await a.workers() == ["a", "b"]  # looking does not announce or withdraw
    await b.leave()
    assert await a.workers() == ["a"]
    await asyncio.sleep(0.3)
    assert await b.workers() == []


def test_quota_splits_partitions_fairly() -> None:
    workers = ["a", "b", "c"]
    assert [quota(w, workers, 16) for w in workers] == [6, 5, 5]
    assert quota("z", workers, 16) == 0
    assert sum(quota(w, [w, "x"], 7) for w in ["a"]) == 4


def _states(owners: dict[int, str], partitions: int) -> dict[int, LeaseState]:
    return {
        p: LeaseState(partition=p, owner=owners.get(p), epoch=1, until_ms=0, live=p in owners)
        for p in range(partitions)
    }


def test_rebalance_plan_releases_above_quota_and_takes_only_free_partitions() -> None:
    owners = {p: "a" for p in range(8)}
    release, take = rebalance_plan("a", ["a", "b"], 8, range(8), _states(owners, 8))
    assert len(release) == 4 and take == []
    owners = {p: "a" for p in range(4)}
    release, take = rebalance_plan("b", ["a", "b"], 8, [], _states(owners, 8))
    assert release == [] and sorted(take) == [4, 5, 6, 7]
    release, take = rebalance_plan("b", ["a", "b"], 8, [4, 5, 6, 7], _states(owners, 8))
    assert release == [] and take == []


async def _converge(managers: list[LeaseManager], owned: dict[str, set[int]], rounds: int = 6) -> None:
    """Run the rebalancing rounds the projector runs, without projecting anything."""
    for _ in range(rounds):
        for m in managers:
            workers = await m.heartbeat()
        for m in managers:
            workers = await m.workers()
            mine = owned.setdefault(m.worker_id, set())
            release, take = rebalance_plan(m.worker_id, workers, m.partitions, mine, await m.states())
            for p in release:
                states = await m.states()
                lease_epoch = states[p].epoch
                await m.release(Lease(partition=p, owner=m.worker_id, epoch=lease_epoch, until_ms=0))
                mine.discard(p)
            want = quota(m.worker_id, workers, m.partitions)
            for p in take:
                if len(mine) >= want:
                    break
                if await m.acquire(p) is not None:
                    mine.add(p)


async def test_partitions_rebalance_when_workers_join_and_leave(event_log: EventLog) -> None:
    a, b, c = (manager(event_log, w) for w in "abc")
    owned: dict[str, set[int]] = {}
    await _converge([a], owned)
    assert owned["a"] == set(range(8))
    await _converge([a, b], owned)
    assert len(owned["a"]) == 4 and len(owned["b"]) == 4 and not owned["a"] & owned["b"]
    await _converge([a, b, c], owned)
    assert sorted(len(owned[w]) for w in "abc") == [2, 3, 3]
    assert set().union(*owned.values()) == set(range(8))
    # b leaves cleanly: its leases are released and a and c share everything.
    for p in sorted(owned.pop("b")):
        lease = await b.acquire(p)
        assert lease is not None
        await b.release(lease)
    await b.leave()
    await _converge([a, c], owned)
    assert (
        len(owned["a"]) == 4 and len(owned["c"]) == 4 and set(owned["a"]) | set(owned["c"]) == set(range(8))
    )
    states = await a.states()
    assert {p: s.owner for p, s in states.items()} == {p: w for w in "ac" for p in owned[w]}


async def test_lease_calls_raise_unavailable_when_redis_is_down() -> None:
    from events import LogSettings, Unavailable

    client = aioredis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    log = EventLog(client, LogSettings(prefix="unreachable", partitions=2))
    with pytest.raises(Unavailable):
        await manager(log, "a").acquire(0)
    await client.aclose()

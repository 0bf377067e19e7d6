"""The projector against a fake read model, on fakeredis and the real Redis: order, exactly-once effect,
fencing of a worker that lost its lease, poison entries, outages, and rebalancing of running workers."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import pytest

from consumers.projector import Projector
from events import EventLog
from projections.memory import InMemoryReadModel
from tests.events.factories import added, created, msg

from .fakes import Recording
from .pg import open_pg_read_model


async def fill(log: EventLog, sessions: int, turns: int, tag: str = "s") -> int:
    """Sessions of a few turns each; the number of events appended."""
    n = 0
    for i in range(sessions):
        sid = f"{tag}{i}"
        await log.append([created(sid, f"u{i % 3}")])
        n += 1
        for t in range(turns):
            await log.append([added(sid, msg("user", f"q{t}"), msg("assistant", f"a{t}"))])
            n += 1
    return n


@pytest.fixture(params=["memory", "postgres"])
async def rm(request: pytest.FixtureRequest) -> AsyncIterator[Recording]:
    """The in-memory read model or PostgreSQL (a fresh schema), behind the recording proxy."""
    if request.param == "memory":
        yield Recording(InMemoryReadModel())
        return
    schema = request.getfixturevalue("pg_schema")
    inner = await open_pg_read_model(schema)
    yield Recording(inner)
    await inner.close()


def projector(log: EventLog, rm: Recording, worker: str, **kw: int) -> Projector:
    kw.setdefault("lease_ttl_ms", 3000)
    return Projector(log, rm, worker_id=worker, batch_size=kw.pop("batch_size", 7), **kw)  # type: ignore[arg-type]


def assert_exactly_once(rm: Recording, expected: int) -> None:
    counts = Counter(rm.applied)
    assert sum(counts.values()) == expected
    assert all(c == 1 for c in counts.values())


async def assert_caught_up(log: EventLog, rm: Recording) -> None:
    heads = await log.heads()
    cps = await rm.checkpoints()
    assert {p: cps[p].position for p in cps} == {p: h for p, h in heads.items() if h is not None}


async def test_burst_applies_every_partition_in_order_once(event_log: EventLog, rm: Recording) -> None:
    n = await fill(event_log, 12, 3)
    stats = await projector(event_log, rm, "w1").run_until_caught_up(timeout_s=30)
    assert stats.applied == n and stats.messages == 12 * 3 * 2
    assert_exactly_once(rm, n)
    for p in range(event_log.partitions):
        positions = [pos for q, pos in rm.applied if q == p]
        assert positions == [e.position for e in await event_log.read(p, count=10_000)]
    await assert_caught_up(event_log, rm)
    # A second burst finds nothing to do, and the leases it took were released.
    again = await projector(event_log, rm, "w2").run_until_caught_up(timeout_s=30)
    assert again.applied == 0 and again.acquired == event_log.partitions
    assert not any(s.live for s in (await again_states(event_log)).values())


async def again_states(log: EventLog):  # type: ignore[no-untyped-def]
    from consumers.leases import LeaseManager

    return await LeaseManager(
        log.redis, log.keys, log.partitions, projection="read_models", worker_id="x"
    ).states()


async def test_a_worker_that_lost_its_lease_is_fenced_no_double_apply(
    event_log: EventLog, rm: Recording
) -> None:
    old = projector(event_log, rm, "old", lease_ttl_ms=200)
    await old.maintain()
    assert sorted(old.owned) == list(range(event_log.partitions))
    n = await fill(event_log, 10, 2)
    # "old" pauses (no heartbeat) past its TTL; "new" takes every partition with a newer epoch and catches up.
    await asyncio.sleep(0.4)
    new = projector(event_log, rm, "new", lease_ttl_ms=200)
    await new.run_until_caught_up(timeout_s=30)
    assert all(cp.epoch == 2 for cp in (await rm.checkpoints()).values())
    # "old" wakes up and carries on with the batch it had in hand, before its next lease renewal: every write
    # is refused, and it drops the partitions.
    old._next_maintain = float("inf")
    await old._tick(None, None)
    assert old.owned == {} and old.stats.fenced > 0 and old.stats.applied == 0
    assert_exactly_once(rm, n)
    await assert_caught_up(event_log, rm)


async def test_a_commit_whose_reply_was_lost_is_not_applied_again(event_log: EventLog, rm: Recording) -> None:
    n = await fill(event_log, 6, 2)
    w = projector(event_log, rm, "w", batch_size=3)
    await w.maintain()
    lengths = await event_log.lengths()
    p = next(p for p in w.owned if lengths[p])
    # Another writer with the same epoch (our own earlier commit, as seen after a lost reply) moved it on.
    first = (await event_log.read(p, count=1))[0]
    await rm.apply_batch(p, [first], expected=None, epoch=w.owned[p].epoch)
    await w.run_until_caught_up(timeout_s=30)
    assert w.stats.fenced == 1
    assert_exactly_once(rm, n)


async def test_poison_entries_dead_lettered_rest_applied(event_log: EventLog, rm: Recording) -> None:
    await fill(event_log, 4, 1)
    p = 0
    key = event_log.keys.log(p)
    bad1 = (
        await event_log.redis.xadd(key, {"type": "session.bogus.v1", "version": "1", "event": b"{}"})
    ).decode()
    await fill(event_log, 4, 1, tag="t")
    bad2 = (
        await event_log.redis.xadd(
            key, {"type": "session.messages_added.v1", "version": "9", "event": b"not json"}
        )
    ).decode()
    n = await fill(event_log, 4, 1, tag="v") + 16
    w = projector(event_log, rm, "w", max_attempts=3, batch_size=50)
    stats = await w.run_until_caught_up(timeout_s=30)
    letters = await rm.dead_letters()
    assert [(d.partition, d.position, d.attempts) for d in letters] == [(0, bad1, 3), (0, bad2, 3)]
    assert "bogus" in letters[0].error
    assert stats.dead_lettered == 2 and stats.applied == n
    assert_exactly_once(rm, n)
    await assert_caught_up(event_log, rm)


async def test_read_model_outages_waited_out_nothing_skipped(event_log: EventLog, rm: Recording) -> None:
    n = await fill(event_log, 8, 2)
    rm.outages = 5
    stats = await projector(event_log, rm, "w", backoff_initial_s=0.01).run_until_caught_up(timeout_s=30)  # type: ignore[arg-type]
    assert stats.outages == 5
    assert_exactly_once(rm, n)
    await assert_caught_up(event_log, rm)


async def test_running_workers_rebalance_on_join_and_leave(event_log: EventLog, rm: Recording) -> None:
    a = projector(event_log, rm, "a", lease_ttl_ms=300)
    b = projector(event_log, rm, "b", lease_ttl_ms=300)
    stop_a, stop_b = asyncio.Event(), asyncio.Event()
    task_a = asyncio.create_task(a.run(stop_a))
    n = await fill(event_log, 5, 1)

    async def until(cond, what: str) -> None:  # type: ignore[no-untyped-def]
        for _ in range(100):
            if cond():
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"not reached: {what}; a={sorted(a.owned)} b={sorted(b.owned)}")

    await until(lambda: len(a.owned) == 8, "a owns all")
    task_b = asyncio.create_task(b.run(stop_b))
    n += await fill(event_log, 5, 1, tag="t")
    await until(lambda: len(a.owned) == 4 and len(b.owned) == 4, "a and b own half each")
    assert not set(a.owned) & set(b.owned)
    stop_b.set()
    await task_b
    n += await fill(event_log, 5, 1, tag="v")
    await until(lambda: len(a.owned) == 8, "a owns all again")
    await until(lambda: len(rm.applied) >= n, "everything applied")
    stop_a.set()
    await task_a
    assert_exactly_once(rm, n)
    await assert_caught_up(event_log, rm)

"""Trimming below the durable checkpoints, and the per-partition status, on fakeredis and the real Redis."""

from __future__ import annotations

from consumers.projector import Projector
from consumers.status import partition_status
from consumers.trim import next_position, trim_partitions
from events import EventLog
from projections.memory import InMemoryReadModel

from .test_projector import fill


def test_next_position_is_the_smallest_id_after() -> None:
    assert next_position("1700000000000-0") == "1700000000000-1"
    assert next_position("5-41") == "5-42"


async def project_part(log: EventLog, rm: InMemoryReadModel, partition: int, count: int) -> str:
    entries = await log.read(partition, count=count)
    out = await rm.apply_batch(partition, entries, expected=None, epoch=1)
    return out.position


async def test_trim_removes_only_what_is_committed(event_log: EventLog) -> None:
    await fill(event_log, 16, 3)
    rm = InMemoryReadModel()
    lengths = await event_log.lengths()
    busy = sorted((p for p in lengths if lengths[p] >= 6), key=lambda p: -lengths[p])
    p, q = busy[0], busy[1]
    cp = await project_part(event_log, rm, p, 4)
    results = {r.partition: r for r in await trim_partitions(event_log, rm)}
    assert results[p].removed == 4 and results[p].remaining == lengths[p] - 4
    assert (await event_log.read(p, count=1))[0].position > cp
    # No checkpoint: nothing archived, nothing trimmed.
    assert results[q].removed == 0 and results[q].min_id is None and results[q].remaining == lengths[q]
    assert sum(r.removed for r in results.values()) == 4


async def test_trim_keeps_a_window_and_the_projector_goes_on_after_a_full_trim(event_log: EventLog) -> None:
    n = await fill(event_log, 16, 3)
    rm = InMemoryReadModel()
    await Projector(event_log, rm, worker_id="w").run_until_caught_up(timeout_s=30)
    lengths = await event_log.lengths()
    kept = {r.partition: r for r in await trim_partitions(event_log, rm, keep=2)}
    assert all(r.remaining == min(2, lengths[r.partition]) for r in kept.values())
    assert all(r.removed == max(0, lengths[r.partition] - 2) for r in kept.values())
    window = await trim_partitions(event_log, rm, keep_seconds=3600)
    assert sum(r.removed for r in window) == 0  # everything is younger than an hour
    everything = await trim_partitions(event_log, rm)
    assert all(r.remaining == 0 for r in everything)
    # The streams are empty, the checkpoints point at trimmed entries: new events still flow.
    more = await fill(event_log, 4, 1, tag="late")
    stats = await Projector(event_log, rm, worker_id="w2").run_until_caught_up(timeout_s=30)
    assert stats.applied == more
    page = await rm.get_messages("default", "late0")
    assert [m.content for m in page.messages] == ["q0", "a0"]
    assert n > 0


async def test_status_reports_head_checkpoint_lag_and_owner(event_log: EventLog) -> None:
    await fill(event_log, 16, 2)
    rm = InMemoryReadModel()
    lengths = await event_log.lengths()
    p = max(lengths, key=lambda k: lengths[k])
    await project_part(event_log, rm, p, 2)
    w = Projector(event_log, rm, worker_id="holder")
    await w.leases.heartbeat()
    lease = await w.leases.acquire(p)
    assert lease is not None
    rows = {r.partition: r for r in await partition_status(event_log, rm)}
    heads = await event_log.heads()
    assert rows[p].head == heads[p] and rows[p].lag_events == lengths[p] - 2 and rows[p].owner == "holder"
    assert rows[p].lag_seconds >= 0 and rows[p].epoch == lease.epoch and rows[p].length == lengths[p]
    other = next(q for q in rows if q != p and lengths[q])
    assert (
        rows[other].checkpoint is None
        and rows[other].lag_events == lengths[other]
        and rows[other].owner is None
    )
    capped = {r.partition: r for r in await partition_status(event_log, rm, lag_cap=1)}
    assert capped[other].lag_capped == (lengths[other] >= 1) and capped[other].lag_events == 1
    await w.run_until_caught_up(timeout_s=30)
    rows = {r.partition: r for r in await partition_status(event_log, rm)}
    assert all(r.lag_events == 0 and r.lag_seconds == 0 and r.checkpoint == r.head for r in rows.values())

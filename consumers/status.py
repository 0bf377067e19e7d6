"""Where each partition stands: head, checkpoint, lag in events and seconds, lease owner. For ``sessions
status``, health checks and metrics; read-only.

Redis streams have no rank, so the lag in events is counted with one XRANGE after the checkpoint, capped at
``lag_cap`` (``lag_capped`` says the true lag is at least that). The lag in seconds is the age, by the Redis
clock, of the oldest entry not applied yet (0 when caught up).
"""

from __future__ import annotations

import msgspec

from events.codec import position_ms
from events.driver import redis_errors
from events.log import EventLog
from projections.api import PROJECTION, ReadModel, position_key

from .leases import LeaseManager, LeaseState

__all__ = ["PartitionStatus", "partition_status"]


class PartitionStatus(msgspec.Struct, frozen=True, kw_only=True):
    partition: int
    head: str | None
    checkpoint: str | None
    lag_events: int
    lag_capped: bool
    lag_seconds: float
    owner: str | None  # the live lease holder; None when nobody holds it
    epoch: int
    length: int  # entries Redis holds for the partition (after trimming)


async def partition_status(
    log: EventLog, read_model: ReadModel, *, projection: str = PROJECTION, lag_cap: int = 10_000
) -> list[PartitionStatus]:
    checkpoints = await read_model.checkpoints(projection)
    leases = LeaseManager(log.redis, log.keys, log.partitions, projection=projection, worker_id="status")
    states: dict[int, LeaseState] = await leases.states()
    with redis_errors():
        async with log.redis.pipeline(transaction=False) as pipe:
            pipe.time()
            for p in range(log.partitions):
                cp = checkpoints.get(p)
                start = f"({cp.position}" if cp and cp.position else "-"
                pipe.xrevrange(log.keys.log(p), count=1)
                pipe.xlen(log.keys.log(p))
                pipe.xrange(log.keys.log(p), min=start, max="+", count=lag_cap)
            replies = await pipe.execute()
    secs, micros = replies[0]
    now_ms = int(secs) * 1000 + int(micros) // 1000
    out = []
    for p in range(log.partitions):
        last, length, pending = replies[1 + 3 * p : 4 + 3 * p]
        head = last[0][0].decode() if last else None
        cp = checkpoints.get(p)
        position = cp.position if cp else None
        if head is not None and position_key(position) >= position_key(head):
            pending = []
        first_ms = position_ms(pending[0][0].decode()) if pending else now_ms
        state = states[p]
        out.append(
            PartitionStatus(
                partition=p,
                head=head,
                checkpoint=position,
                lag_events=len(pending),
                lag_capped=len(pending) >= lag_cap,
                lag_seconds=max(0.0, (now_ms - first_ms) / 1000),
                owner=state.owner if state.live else None,
                epoch=max(state.epoch, cp.epoch if cp else 0),
                length=int(length),
            )
        )
    return out

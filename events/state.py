"""Writing the append script's state back, for a log that lost it (``consumers.recover``): what the script
keeps of each aggregate (``events.keys``: agg, tc, mem), the users' scoped-sessions sets, and where each
partition's stream goes on generating ids."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import msgspec
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .errors import Unavailable
from .keys import partition_of
from .log import EventLog, position_key

__all__ = ["AggregateSnapshot", "IdempotencyRecord", "restore"]


class AggregateSnapshot(msgspec.Struct, kw_only=True):
    """Everything the append script keeps of one aggregate (``Keys``: agg, tc, mem), as a recovery rebuilds
    it from the archive (``consumers.recover``)."""

    tenant: str
    kind: str
    aggregate_id: str
    version: int = 0
    position: str | None = None
    user_id: str | None = None  # a session's owner
    deleted: bool = False
    message_count: int = 0
    tool_calls: dict[str, str] = msgspec.field(default_factory=dict)  # id -> '0' pending / '1' answered
    memory_keys: set[str] = msgspec.field(default_factory=set)


class IdempotencyRecord(msgspec.Struct, frozen=True, kw_only=True):
    """An event id's entry of the dedup window: what a retry of its append is answered."""

    partition: int
    tenant: str
    event_id: str
    result: bytes  # the append result's JSON, as the script stores it
    ttl_s: int  # what is left of the dedup window


async def restore(
    log: EventLog,
    aggregates: Iterable[AggregateSnapshot],
    scoped: Mapping[tuple[str, str], Iterable[str]],
    last_positions: Mapping[int, str],
    *,
    idempotency: Iterable[IdempotencyRecord] = (),
    chunk: int = 500,
) -> int:
    """Write the script's state back (``consumers.recover``): each aggregate's hash, tool calls and
    memory keys replaced; each user's scoped-sessions set replaced; the event ids of the dedup window
    (``idempotency``) where missing; each partition's stream made to
    generate ids after ``last_positions`` (so the projectors, whose checkpoints are there, see what
    comes next). Returns the aggregates written."""
    written = 0
    batch: list[AggregateSnapshot] = []
    try:
        for snap in aggregates:
            batch.append(snap)
            if len(batch) >= chunk:
                written += await _restore_chunk(log, batch)
                batch = []
        written += await _restore_chunk(log, batch)
        async with log.redis.pipeline(transaction=False) as pipe:
            for (tenant, user), sessions in scoped.items():
                key = log.keys.scoped_sessions(
                    partition_of(tenant, "memory", user, log.partitions), tenant, user
                )
                pipe.delete(key)
                members = sorted(sessions)
                if members:
                    pipe.sadd(key, *members)
            await pipe.execute()
        async with log.redis.pipeline(transaction=False) as pipe:
            for n, rec in enumerate(idempotency, 1):
                key = log.keys.idempotency(rec.partition, rec.tenant, rec.event_id)
                pipe.set(key, rec.result, ex=max(1, rec.ttl_s), nx=True)  # nx: a surviving one is the truth
                if n % chunk == 0:
                    await pipe.execute()
            await pipe.execute()
        last = await log.last_ids(list(last_positions))
        for p, pos in last_positions.items():
            if position_key(last[p]) < position_key(pos):
                # An entry at the archive's last position, deleted at once: the stream remembers the id.
                async with log.redis.pipeline(transaction=True) as pipe:
                    pipe.xadd(log.keys.log(p), {"recovered": "1"}, id=pos)
                    pipe.xdel(log.keys.log(p), pos)
                    await pipe.execute()
    except (RedisConnectionError, RedisTimeoutError, OSError) as e:
        raise Unavailable(f"cannot reach Redis: {e}") from e
    return written


async def _restore_chunk(log: EventLog, batch: Sequence[AggregateSnapshot]) -> int:
    if not batch:
        return 0
    async with log.redis.pipeline(transaction=False) as pipe:
        for s in batch:
            p = partition_of(s.tenant, s.kind, s.aggregate_id, log.partitions)
            agg = log.keys.aggregate(p, s.tenant, s.kind, s.aggregate_id)
            tc = log.keys.tool_calls(p, s.tenant, s.kind, s.aggregate_id)
            mem = log.keys.memory_keys(p, s.tenant, s.kind, s.aggregate_id)
            pipe.delete(agg, tc, mem)
            fields: dict[str, str | int] = {"v": s.version}
            if s.position is not None:
                fields["pos"] = s.position
            if s.kind == "session":
                fields["mc"] = s.message_count
                if s.user_id is not None:
                    fields["user"] = s.user_id
                if s.deleted:
                    fields["del"] = "1"
            pipe.hset(agg, mapping=fields)  # type: ignore[arg-type]
            if s.tool_calls:
                pipe.hset(tc, mapping=s.tool_calls)  # type: ignore[arg-type]
            if s.memory_keys:
                pipe.sadd(mem, *sorted(s.memory_keys))
        await pipe.execute()
    return len(batch)

"""The partitioned event log on Redis Streams: atomic append, ordered reads, heads.

The logic (which keys, which arguments, what a reply means) is plain functions; ``EventLog`` (asyncio) and
``Publisher`` (blocking, for other services) only send them. Both work unchanged on Redis 7 and on fakeredis.
Every call goes through ``events.driver``: its failures arrive as ``events.errors`` and, in ``EventLog``, it
answers within ``LogSettings.timeout_s`` (a blocking read: plus its block time) or raises ``Unavailable``.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
import redis
import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, ResponseError

from .codec import RawEntry, encode_event
from .driver import as_project_error, connect, connect_blocking, redis_call, redis_errors, translate_error
from .errors import ConfigurationError, InvalidEvent, SessionsError, Unavailable
from .keys import Keys, partition_of
from .schema import Event, MemorySaved
from .settings import LogSettings

__all__ = [
    "AggregateState",
    "AppendPlan",
    "AppendResult",
    "EventLog",
    "Publisher",
    "load_script",
    "parse_entries",
    "parse_reply",
    "plan_append",
    "position_key",
    "state_lost_error",
    "translate_error",
]

START = "0-0"


def load_script() -> str:
    return importlib.resources.files("events").joinpath("append.lua").read_text()


class AppendResult(msgspec.Struct, frozen=True, kw_only=True):
    """What an append did. ``position`` is the stream entry id of the aggregate's latest event (the one just
    appended, or, when nothing was appended, the latest before); wait for ``(partition, position)`` to read
    your write."""

    partition: int
    version: int
    position: str | None = None
    appended: bool = False
    duplicate: bool = False
    event_ids: list[str] = msgspec.field(default_factory=list)
    removed: int = 0
    message_count: int | None = None


class AggregateState(msgspec.Struct, frozen=True, kw_only=True):
    partition: int
    version: int = 0
    position: str | None = None
    user_id: str | None = None
    deleted: bool = False
    message_count: int = 0

    @property
    def exists(self) -> bool:
        return self.version > 0


class AppendPlan(msgspec.Struct, frozen=True):
    partition: int
    keys: list[str]
    args: list[bytes | str]
    scoped: tuple[str, str] | None = None  # (the user's scoped-sessions set, session id): SADD first


_result_decoder = msgspec.json.Decoder(AppendResult)


def plan_append(
    keys: Keys, partitions: int, events: Sequence[Event], expected_version: int | None = None
) -> AppendPlan:
    """Keys and arguments of the append script for events of one aggregate."""
    if not events:
        raise InvalidEvent("an append needs at least one event", code="empty_append")
    first = events[0]
    tenant, kind, agg_id = first.tenant, first.aggregate_kind, first.aggregate_id
    for e in events[1:]:
        if (e.tenant, e.aggregate_kind, e.aggregate_id) != (tenant, kind, agg_id):
            raise InvalidEvent(
                "all events of one append must belong to one aggregate", code="mixed_aggregates"
            )
    p = partition_of(tenant, kind, agg_id, partitions)
    script_keys = [
        keys.config(p),
        keys.log(p),
        keys.aggregate(p, tenant, kind, agg_id),
        keys.tool_calls(p, tenant, kind, agg_id),
        keys.memory_keys(p, tenant, kind, agg_id),
    ]
    script_keys.extend(keys.idempotency(p, tenant, str(e.id)) for e in events)
    args: list[bytes | str] = ["" if expected_version is None else str(expected_version)]
    args.extend(encode_event(e) for e in events)
    scoped = None
    for e in events:
        if isinstance(e, MemorySaved) and e.payload.session_id is not None:
            up = partition_of(tenant, "memory", e.payload.user_id, partitions)
            scoped = (keys.scoped_sessions(up, tenant, e.payload.user_id), e.payload.session_id)
    return AppendPlan(p, script_keys, args, scoped)


def parse_reply(reply: Any) -> AppendResult:
    status, body = reply[0], reply[1]
    if isinstance(status, bytes):
        status = status.decode()
    result = _result_decoder.decode(body)
    if status == "duplicate":
        return msgspec.structs.replace(result, duplicate=True)
    return result


def parse_entries(partition: int, raw: Sequence[Any]) -> list[RawEntry]:
    out = []
    for entry_id, fields in raw:
        position = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
        type_tag = fields.get(b"type", b"").decode()
        try:
            version = int(fields.get(b"version", b"0"))
        except ValueError:
            version = 0
        out.append(RawEntry(partition, position, type_tag, version, fields.get(b"event", b"")))
    return out


def _state(partition: int, values: Sequence[bytes | None]) -> AggregateState:
    v, pos, user, deleted, mc = values
    return AggregateState(
        partition=partition,
        version=int(v or 0),
        position=pos.decode() if pos else None,
        user_id=user.decode() if user else None,
        deleted=deleted == b"1",
        message_count=int(mc or 0),
    )


_STATE_FIELDS = ("v", "pos", "user", "del", "mc")


def position_key(position: str | None) -> tuple[int, int]:
    if not position:
        return (-1, -1)
    ms, _, seq = position.partition("-")
    return (int(ms), int(seq or 0))


def _config_mapping(settings: LogSettings) -> dict[str, int]:
    return {
        "partitions": settings.partitions,
        "dedup_window_s": settings.dedup_window_s,
        **settings.limits.as_redis_hash(),
    }


def _check_partitions(found: bytes | None, settings: LogSettings) -> None:
    if found is not None and int(found) != settings.partitions:
        raise ConfigurationError(
            f"this Redis holds a log of {int(found)} partitions under prefix {settings.prefix!r}, but the "
            f"settings ask for {settings.partitions}; the partition count is fixed for a deployment",
            code="partition_count_mismatch",
        )


def state_lost_error() -> Unavailable:
    """What a write to a log that lost its state answers (and ``/readyz``)."""
    return Unavailable(
        "the log lost its state (Redis restarted empty?): writes are refused until `sessions recover-log`"
        " restores it from the archive",
        code="log_state_lost",
    )


class EventLog:
    """The log, over an asyncio Redis client (redis-py or fakeredis)."""

    def __init__(self, client: aioredis.Redis, settings: LogSettings | None = None) -> None:
        self.redis = client
        self.settings = settings or LogSettings()
        self.keys = Keys(self.settings.prefix)
        self.partitions = self.settings.partitions
        self.timeout_s = self.settings.timeout_s
        self._script = client.register_script(load_script())
        self._sha = self._script.sha
        self._set_up = False  # True once this process saw the log configured: a config gone is a lost log

    @classmethod
    def connect(cls, settings: LogSettings) -> EventLog:
        """The real Redis of ``settings.redis_url``, or, with none, an in-process fakeredis (embedded)."""
        if settings.redis_url:
            client = connect(settings.redis_url, settings.timeout_s)
        else:
            import fakeredis

            client = fakeredis.FakeAsyncRedis()
        return cls(client, settings)

    async def setup(self, applied: Mapping[int, str | None] | None = None) -> list[int]:
        """Write the limits each partition's script reads. Refuses a partition count that differs.

        ``applied``: what the read models hold of each partition (their checkpoints). A partition whose log
        ends before that (a Redis restarted empty, or that lost its last writes) has lost the state the
        script checks against (versions, owners, deleted sessions): the whole log is then marked lost, and
        every write is refused (``log_state_lost``, 503) until ``sessions recover-log``. Returns those
        partitions. A log marked lost stays so, whoever runs setup."""
        async with redis_call(self.timeout_s):
            found: Any = await self.redis.hget(self.keys.config(0), "partitions")
        _check_partitions(found, self.settings)
        lost = await self._behind(applied or {})
        mapping: dict[str, int | str] = dict(_config_mapping(self.settings))
        if lost:
            mapping["state"] = "lost"
        async with redis_call(self.timeout_s), self.redis.pipeline(transaction=False) as pipe:
            for p in range(self.partitions):
                pipe.hset(self.keys.config(p), mapping=mapping)  # type: ignore[arg-type]
            await pipe.execute()
        self._set_up = True
        return lost

    async def _behind(self, applied: Mapping[int, str | None]) -> list[int]:
        wanted = {p: pos for p, pos in applied.items() if pos is not None and 0 <= p < self.partitions}
        if not wanted:
            return []
        last = await self.last_ids(list(wanted))
        return sorted(p for p, pos in wanted.items() if position_key(last[p]) < position_key(pos))

    async def last_ids(self, partitions: Sequence[int]) -> dict[int, str | None]:
        """The last id each partition's stream ever generated (trimmed entries included); None: no stream."""
        out: dict[int, str | None] = {}
        async with redis_call(self.timeout_s):
            for p in partitions:
                try:
                    info: Any = await self.redis.xinfo_stream(self.keys.log(p))
                except ResponseError:  # no such key
                    out[p] = None
                    continue
                last = info.get("last-generated-id")
                out[p] = last.decode() if isinstance(last, bytes) else last
        return out

    async def now_ms(self) -> int:
        """Redis' clock, in ms (the clock of the stream ids)."""
        async with redis_call(self.timeout_s):
            secs, micros = await self.redis.time()
        return int(secs) * 1000 + int(micros) // 1000

    async def configs(self) -> list[tuple[int | None, bool]]:
        """Per partition: the partition count its config names (None: the config is gone, as after a Redis
        that lost its data) and whether the log is marked lost there."""
        async with redis_call(self.timeout_s), self.redis.pipeline(transaction=False) as pipe:
            for p in range(self.partitions):
                pipe.hmget(self.keys.config(p), ["partitions", "state"])
            replies: Any = await pipe.execute()
        return [(None if r[0] is None else int(r[0]), r[1] == b"lost") for r in replies]

    async def state_lost(self) -> bool:
        """True when a partition's config is gone (Redis lost its data) or marked lost."""
        return any(count is None or lost for count, lost in await self.configs())

    async def mark_state(self, lost: bool) -> None:
        """Mark every partition lost (writes refused) or restored; writes the config too."""
        mapping: dict[str, int | str] = dict(_config_mapping(self.settings))
        marked: dict[str, int | str] = {**mapping, "state": "lost"}
        async with redis_call(self.timeout_s), self.redis.pipeline(transaction=True) as pipe:
            for p in range(self.partitions):
                if lost:
                    pipe.hset(self.keys.config(p), mapping=marked)  # type: ignore[arg-type]
                else:
                    pipe.hset(self.keys.config(p), mapping=mapping)  # type: ignore[arg-type]
                    pipe.hdel(self.keys.config(p), "state")
            await pipe.execute()
        self._set_up = True

    async def append(self, events: Sequence[Event], expected_version: int | None = None) -> AppendResult:
        plan = plan_append(self.keys, self.partitions, events, expected_version)
        try:
            async with redis_call(self.timeout_s):
                if plan.scoped is not None:
                    # Before the append, so a clear of all the user's memory always finds this session.
                    await self.redis.sadd(plan.scoped[0], plan.scoped[1])
                # EVALSHA directly: redis-py's Script wrapper costs ~10 us a call on this hot path.
                try:
                    reply = await self.redis.evalsha(self._sha, len(plan.keys), *plan.keys, *plan.args)
                except NoScriptError:
                    reply = await self._script(keys=plan.keys, args=plan.args)
        except SessionsError as e:
            lost = self._lost(e)
            if lost is e:
                raise
            raise lost from e
        return parse_reply(reply)

    def _lost(self, error: SessionsError) -> SessionsError:
        """The config gone under a process that saw it set up: Redis lost its data, not a new deployment."""
        if self._set_up and error.code == "log_not_configured":
            return state_lost_error()
        return error

    async def append_batch(self, appends: Sequence[Sequence[Event]]) -> list[AppendResult | SessionsError]:
        """Several independent appends (each to one aggregate, each atomic) in one pipelined round trip.

        Results come back in order; a refused append yields its error in place and does not stop the rest.
        """
        plans = [plan_append(self.keys, self.partitions, events) for events in appends]
        async with redis_call(self.timeout_s), self.redis.pipeline(transaction=False) as pipe:
            for plan in plans:
                if plan.scoped is not None:
                    pipe.sadd(plan.scoped[0], plan.scoped[1])
                await self._script(keys=plan.keys, args=plan.args, client=pipe)
            replies = await pipe.execute(raise_on_error=False)
        results: list[AppendResult | SessionsError] = []
        it = iter(replies)
        for plan in plans:
            if plan.scoped is not None:
                next(it)
            reply = next(it)
            if isinstance(reply, Exception):
                results.append(
                    self._lost(as_project_error(reply) or Unavailable(f"redis failed the append: {reply}"))
                )
            else:
                results.append(parse_reply(reply))
        return results

    async def read(
        self, partition: int, after: str = START, count: int = 1000, block_ms: int | None = None
    ) -> list[RawEntry]:
        """Entries of one partition after ``after``, in order; waits up to ``block_ms`` when none."""
        return (await self.read_many({partition: after}, count, block_ms)).get(partition, [])

    async def read_many(
        self, positions: dict[int, str], count: int = 1000, block_ms: int | None = None
    ) -> dict[int, list[RawEntry]]:
        """Entries of several partitions after their positions (one XREAD). On Redis Cluster, call it with
        the partitions of one node at a time. A blocking read waits at most half of ``timeout_s`` (below the
        client's socket timeout, which redis-py does not stretch for XREAD's BLOCK); callers loop."""
        if not positions:
            return {}
        streams = {self.keys.log(p): after for p, after in positions.items()}
        by_key = {self.keys.log(p): p for p in positions}
        if block_ms is not None:
            block_ms = max(1, min(block_ms, int(self.timeout_s * 500)))
        async with redis_call(self.timeout_s + (block_ms or 0) / 1000):
            reply: Any = await self.redis.xread(streams, count=count, block=block_ms)  # type: ignore[arg-type]
        out: dict[int, list[RawEntry]] = {}
        for key, entries in reply or []:
            p = by_key[key.decode() if isinstance(key, bytes) else key]
            out[p] = parse_entries(p, entries)
        return out

    async def heads(self) -> dict[int, str | None]:
        """The latest entry id of every partition (None for an empty one)."""
        async with redis_call(self.timeout_s), self.redis.pipeline(transaction=False) as pipe:
            for p in range(self.partitions):
                pipe.xrevrange(self.keys.log(p), count=1)
            replies = await pipe.execute()
        return {p: (r[0][0].decode() if r else None) for p, r in enumerate(replies)}

    async def lengths(self) -> dict[int, int]:
        async with redis_call(self.timeout_s), self.redis.pipeline(transaction=False) as pipe:
            for p in range(self.partitions):
                pipe.xlen(self.keys.log(p))
            return dict(enumerate(await pipe.execute()))

    async def aggregate(self, tenant: str, kind: str, aggregate_id: str) -> AggregateState:
        """The log's current state of one aggregate (version, latest position, owner for a session)."""
        p = partition_of(tenant, kind, aggregate_id, self.partitions)
        key = self.keys.aggregate(p, tenant, kind, aggregate_id)
        async with redis_call(self.timeout_s):
            values: Any = await self.redis.hmget(key, _STATE_FIELDS)
        return _state(p, values)

    async def scoped_sessions(self, tenant: str, user_id: str) -> list[str]:
        """Sessions where the user may hold session-scoped memory (a superset: stale entries are harmless)."""
        p = partition_of(tenant, "memory", user_id, self.partitions)
        async with redis_call(self.timeout_s):
            members: Any = await self.redis.smembers(self.keys.scoped_sessions(p, tenant, user_id))
        return sorted(m.decode() for m in members)

    async def close(self) -> None:
        with redis_errors():
            await self.redis.aclose()


class Publisher:
    """Blocking publisher for other Python services: the same script, the same checks, no way around them.

    >>> pub = Publisher.from_url("redis://127.0.0.1:6379/0")
    >>> result = pub.publish([SessionCreated(aggregate_kind="session", aggregate_id="s1",
    ...                                      payload=SessionCreatedPayload(user_id="u1"))])
    """

    def __init__(self, client: redis.Redis, settings: LogSettings | None = None) -> None:
        self.redis = client
        self.settings = settings or LogSettings()
        self.keys = Keys(self.settings.prefix)
        self._script = client.register_script(load_script())

    @classmethod
    def from_url(cls, url: str, settings: LogSettings | None = None) -> Publisher:
        settings = settings or LogSettings()
        return cls(connect_blocking(url, settings.timeout_s), settings)

    def publish(self, events: Sequence[Event], expected_version: int | None = None) -> AppendResult:
        """Append events of one aggregate atomically. Retrying with the same event ids is safe."""
        plan = plan_append(self.keys, self.settings.partitions, events, expected_version)
        with redis_errors():
            if plan.scoped is not None:
                self.redis.sadd(plan.scoped[0], plan.scoped[1])
            reply = self._script(keys=plan.keys, args=plan.args)
        return parse_reply(reply)

    def close(self) -> None:
        self.redis.close()

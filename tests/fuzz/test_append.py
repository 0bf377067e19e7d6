"""Hypothesis over the append script, on fakeredis and the real Redis: arbitrary JSON and mutations of valid
events, sent through the raw script call (keys computed from the mutated event where it still names an
aggregate, so the deeper rules run) and through ``EventLog.append`` (when the mutation still decodes).

Only typed ``SessionsError``s come out, none of them the script's own runtime error (``script_error``: a rule
the script forgot); a refusal writes nothing (every key under the prefix unchanged); what ``EventLog.append``
accepts, the decoder reads back. Every document gets a fresh event id, so the idempotency check (which answers
before any rule) does not hide the rules.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import fakeredis
import msgspec
import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.exceptions import ResponseError

from events import (
    EventLog,
    InvalidEvent,
    LogSettings,
    SessionsError,
    UndecodableEvent,
    decode_entry,
    decode_event,
)
from events.keys import partition_of
from events.log import parse_reply, plan_append, translate_error
from projections.apply import decode as decode_for_projection
from tests.fix_redis import delete_prefix, real_redis

from .strategies import as_json, json_values, mutated, seed, valid_events, valid_jsons

PARTITIONS = 2


class Harness:
    """One log under a fresh prefix with the seed appended, on one asyncio loop for the whole test."""

    def __init__(self, backend: str) -> None:
        self.runner = asyncio.Runner()
        self.backend = backend
        self.prefix = f"fuzz-{uuid.uuid4().hex[:10]}"
        self.log: EventLog = self.run(self._open())

    def run(self, coro: Any) -> Any:
        return self.runner.run(coro)

    async def _open(self) -> EventLog:
        client = fakeredis.FakeAsyncRedis() if self.backend == "fakeredis" else await real_redis()
        log = EventLog(client, LogSettings(prefix=self.prefix, partitions=PARTITIONS))
        await log.setup()
        for events in seed():
            await log.append(events)
        return log

    async def snapshot(self, keys: list[str]) -> dict[str, Any]:
        """What the script may touch: its KEYS (a script reaches no other key) and every partition's log."""
        r: aioredis.Redis = self.log.redis
        out: dict[str, Any] = {}
        for key in {*keys, *(self.log.keys.log(p) for p in range(PARTITIONS))}:
            kind = (await r.type(key)).decode()
            if kind == "string":
                out[key] = await r.get(key)
            elif kind == "hash":
                out[key] = await r.hgetall(key)
            elif kind == "set":
                out[key] = await r.smembers(key)
            elif kind == "stream":
                out[key] = [e[0] for e in await r.xrange(key)]
            else:
                out[key] = kind
        return out

    def close(self) -> None:
        async def go() -> None:
            await delete_prefix(self.log.redis, self.prefix)
            await self.log.close()

        self.run(go())
        self.runner.close()


@pytest.fixture(params=["fakeredis", "redis"])
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    h = Harness(request.param)
    yield h
    h.close()


FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "300")),
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def _keys_and_args(log: EventLog, docs: list[Any], expected: str) -> tuple[list[str], list[bytes | str]]:
    """The script's keys for the aggregate the first document names (a valid one's when it names none)."""
    first = docs[0] if isinstance(docs[0], dict) else {}
    tenant, kind, agg = first.get("tenant", "default"), first.get("aggregate_kind"), first.get("aggregate_id")
    if not all(isinstance(v, str) for v in (tenant, kind, agg)):
        tenant, kind, agg = "default", "session", "s-fuzz"
    k, p = log.keys, partition_of(tenant, kind, agg, log.partitions)
    keys = [
        k.config(p),
        k.log(p),
        k.aggregate(p, tenant, kind, agg),
        k.tool_calls(p, tenant, kind, agg),
        k.memory_keys(p, tenant, kind, agg),
    ]
    for d in docs:
        eid = d.get("id") if isinstance(d, dict) else None
        keys.append(k.idempotency(p, tenant, eid if isinstance(eid, str) else "x"))
    return keys, [expected, *(msgspec.json.encode(d) for d in docs)]


async def _written_since(log: EventLog, before: dict[str, Any], decode: bool) -> list[Any]:
    """The entries appended since ``before`` (decoded when ``decode``)."""
    out = []
    for p in range(log.partitions):
        old = set(before[log.keys.log(p)])
        for entry in await log.read(p, count=10_000):
            if entry.position.encode() not in old:
                out.append(decode_entry(entry) if decode else entry)
    return out


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def _assert_deliberate(e: SessionsError) -> None:
    assert e.code != "script_error", e.message
    assert e.code != "redis_error", e.message
    assert e.message and "Traceback" not in e.message


OUTCOMES: Counter[str] = Counter()


async def _raw(h: Harness, docs: list[Any], expected: str, infinite: bool) -> None:
    keys, args = _keys_and_args(h.log, docs, expected)
    if infinite:  # JSON text msgspec never writes: cjson reads it as Infinity
        args = [a.replace(b"1.5", b"1e999") if isinstance(a, bytes) else a for a in args]
    before = await h.snapshot(keys)
    try:
        reply = await h.log.redis.evalsha(h.log._sha, len(keys), *keys, *args)
    except ResponseError as e:
        error = translate_error(e)
        OUTCOMES[error.code] += 1
        _assert_deliberate(error)
        assert await h.snapshot(keys) == before, f"{error.code}: a refused append wrote something"
        return
    result = parse_reply(reply)
    OUTCOMES["appended" if result.appended and not result.duplicate else "nothing"] += 1
    written = await _written_since(h.log, before, decode=False)
    assert len(written) == (len(docs) if result.appended and not result.duplicate else 0)
    # What the log acknowledged, a projector reads (issue 15 item 7): the script refuses what the read
    # models' decoder cannot take (a 13th month, a timestamp of 1.5), and the decoder reads what a
    # publisher may write that the strict types do not (1.0 for an integer, a null for a default).
    for entry in written:
        decode_for_projection(entry)  # PoisonEvent fails the test


async def _typed(h: Harness, docs: list[Any]) -> None:
    try:
        events = [decode_event(msgspec.json.encode(d)) for d in docs]
        keys = plan_append(h.log.keys, PARTITIONS, events).keys
    except (UndecodableEvent, InvalidEvent):
        return
    before = await h.snapshot(keys)
    try:
        result = await h.log.append(events)
    except SessionsError as e:
        _assert_deliberate(e)
        assert await h.snapshot(keys) == before, f"{e.code}: a refused append wrote something"
        return
    written = await _written_since(h.log, before, decode=True)
    assert len(written) == (len(events) if result.appended and not result.duplicate else 0)
    # What the log takes, the read models can store: no NUL (PostgreSQL text cannot hold it).
    assert not any(_has_nul(msgspec.to_builtins(e)) for e in written), written


_doc = mutated(valid_jsons())
raw_docs = st.lists(st.one_of(_doc, _doc, _doc, json_values), min_size=1, max_size=3)
expected_versions = st.sampled_from(["", "", "", "", "0", "1", "2", "-1", "x", "1e3", "99999999999999999999"])


def test_the_raw_script_refuses_arbitrary_and_mutated_events_cleanly(harness: Harness) -> None:
    @FUZZ
    @given(docs=raw_docs, expected=expected_versions, infinite=st.booleans())
    def run(docs: list[Any], expected: str, infinite: bool) -> None:
        harness.run(_raw(harness, docs, expected, infinite))

    OUTCOMES.clear()
    run()
    # The mutations reach past the envelope checks into the rules, and some appends pass.
    assert len(OUTCOMES) >= 8 and OUTCOMES["appended"] > 0, OUTCOMES
    print(sorted(OUTCOMES.items()))


def test_the_log_refuses_decodable_mutations_cleanly(harness: Harness) -> None:
    @FUZZ
    @given(docs=st.lists(mutated(valid_jsons()), min_size=1, max_size=3))
    def run(docs: list[Any]) -> None:
        harness.run(_typed(harness, docs))

    run()


def test_the_valid_events_still_append(harness: Harness) -> None:
    """The strategies' base events are valid: the fuzzing starts from events the log accepts."""
    for event in valid_events():
        try:
            harness.run(harness.log.append([event]))
        except SessionsError as e:  # a deliberate rule against an earlier one (e.g. k1 already deleted)
            _assert_deliberate(e)
    assert as_json(valid_events()[0])["type"] == "session.created.v1"

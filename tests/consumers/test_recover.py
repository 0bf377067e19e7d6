"""``recover-log`` restores the log's state from the archive (issue 15 item 8): after a Redis that lost its
data, the script's state (versions, owners, deletions, tool calls, memory keys, scoped sets) is exactly what
it was, versions continue with no gap and no duplicate, and another user cannot take over a session id.
Runs on fakeredis and the real Redis, with both read models."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import msgspec
import pytest
import redis.asyncio as aioredis

from consumers.progress import Progress
from consumers.recover import recover_log
from events import (
    Conflict,
    DuplicateEventId,
    EventLog,
    LogSettings,
    PermissionDenied,
    SessionDeleted,
    Unavailable,
)
from events.keys import partition_of
from events.log import position_key
from projections.api import ReadModel
from tests.events.factories import (
    added,
    call,
    cleared,
    created,
    deleted,
    forgotten,
    mem_deleted,
    msg,
    saved,
)
from tests.fix_redis import REDIS_URL, delete_prefix
from tests.projections.helpers import project

from .test_cli import PARTITIONS, cli_env, run

__all__ = ["cli_env"]  # a fixture, imported to be used here

STATE_KINDS = ("agg", "tc", "mem", "scoped")


async def script_state(log: EventLog) -> dict[str, Any]:
    """Every key the append script keeps state in, with its content."""
    out: dict[str, Any] = {}
    async for raw in log.redis.scan_iter(match=f"{log.settings.prefix}:*"):
        key = raw.decode()
        kind = key.split(":")[2]
        if kind in ("agg", "tc"):
            out[key] = {k.decode(): v.decode() for k, v in (await log.redis.hgetall(key)).items()}
        elif kind in ("mem", "scoped"):
            out[key] = sorted(m.decode() for m in await log.redis.smembers(key))
    return {k: v for k, v in out.items() if v}


def assert_same_state(before: dict[str, Any], after: dict[str, Any]) -> None:
    """Equal, but for a scoped-sessions set, which may be a superset (its contract: stale entries are
    harmless; across partitions recovery orders a save and an erasure by time alone, to the millisecond)."""
    for key in set(before) | set(after):
        if key.split(":")[2] == "scoped":
            assert set(before.get(key, [])) <= set(after.get(key, [])), key
        else:
            assert before.get(key) == after.get(key), key


async def history(log: EventLog) -> None:
    """A bit of everything the script keeps state for."""
    await log.append([created("s1", "alice", topic="x")])
    await log.append(
        [added("s1", msg("user", "q"), msg("assistant", None, tool_calls=[call("c1"), call("c2")]))]
    )
    await log.append([added("s1", msg("tool", "r1", tool_call_id="c1"))])
    await log.append([saved("alice", "home", "Porto"), saved("alice", "work", "Lisbon")])
    await log.append([mem_deleted("alice", "work")])
    await log.append([saved("alice", "mood", "ok", session="s1")])
    await log.append([created("s2", "alice")])
    await log.append([saved("alice", "gone", 1, session="s2")])
    await log.append([deleted("s2")])
    await log.append([created("s3", "bob")])
    await log.append([saved("bob", "k", 1), saved("bob", "k2", 2)])
    await log.append([cleared("bob")])
    await log.append([created("s4", "carol")])
    await log.append([saved("carol", "k", 1, session="s4")])
    await log.append([deleted("s4", reason="user_forgotten")])
    p = partition_of("default", "memory", "carol", log.partitions)
    await log.redis.delete(log.keys.scoped_sessions(p, "default", "carol"))  # what forget_user does
    await log.append([forgotten("carol")])


async def test_recover_log_restores_the_state_exactly(event_log: EventLog, read_model: ReadModel) -> None:
    await history(event_log)
    await project(event_log, read_model)
    before = await script_state(event_log)
    assert before
    await delete_prefix(event_log.redis, event_log.settings.prefix)  # Redis restarted empty
    applied = {p: cp.position for p, cp in (await read_model.checkpoints()).items()}
    restarted = EventLog(event_log.redis, event_log.settings)
    assert await restarted.setup(applied)
    with pytest.raises(Unavailable) as info:
        await restarted.append([created("s1", "mallory")])
    assert info.value.code == "log_state_lost"

    out = io.StringIO()
    bar = Progress(out, "recover-log")
    result = await recover_log(restarted, read_model, progress=bar.update)
    bar.close()
    assert result.events == 18 and result.unreadable == 0 and "recover-log: 18" in out.getvalue()
    assert_same_state(before, await script_state(restarted))
    assert not await restarted.state_lost()

    # Owners hold, deleted ids stay deleted, versions continue with no gap and no duplicate.
    with pytest.raises(PermissionDenied):
        await restarted.append([created("s1", "mallory")])
    with pytest.raises(SessionDeleted):
        await restarted.append([created("s2", "alice")])
    with pytest.raises(Conflict):
        await restarted.append([added("s1", msg("user", "late"))], expected_version=3)
    r = await restarted.append([added("s1", msg("tool", "r2", tool_call_id="c2"))], expected_version=4)
    assert r.appended and r.version == 5
    assert (await restarted.append([created("s1", "alice")])).version == 5  # resumed, not re-created
    # The projectors see what comes next (the stream's ids go on after their checkpoints).
    await project(restarted, read_model)
    assert await read_model.dead_letters() == []
    page = await read_model.get_messages("default", "s1")
    assert [m.content for m in page.messages] == ["q", None, "r1", "r2"]


async def test_recover_log_folds_the_unprojected_tail(event_log: EventLog, read_model: ReadModel) -> None:
    """State keys lost but the streams kept (the archive behind the log): the tail is folded too."""
    await history(event_log)
    await project(event_log, read_model)
    await event_log.append([added("s1", msg("user", "after the projection"))])
    await event_log.append([created("s5", "dave")])
    before = await script_state(event_log)
    async for raw in event_log.redis.scan_iter(match=f"{event_log.settings.prefix}:*"):
        if raw.decode().split(":")[2] in (*STATE_KINDS, "config"):
            await event_log.redis.delete(raw)
    result = await recover_log(event_log, read_model)
    assert result.events == 20
    assert_same_state(before, await script_state(event_log))
    assert (await event_log.append([added("s1", msg("user", "next"))])).version == 6


async def test_recover_log_twice_is_the_same(event_log: EventLog, read_model: ReadModel) -> None:
    await history(event_log)
    await project(event_log, read_model)
    before = await script_state(event_log)
    await recover_log(event_log, read_model)
    await recover_log(event_log, read_model)
    assert_same_state(before, await script_state(event_log))


def test_the_recover_log_command(
    cli_env: dict[str, str], key_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``sessions recover-log`` (registered by consumers.cli) on the real servers: progress on stderr, one
    line of result, exit 0; the lost log takes writes again at the right versions."""

    def fresh_log() -> EventLog:
        return EventLog(
            aioredis.Redis.from_url(REDIS_URL), LogSettings(prefix=key_prefix, partitions=PARTITIONS)
        )

    async def write() -> None:
        log = fresh_log()
        await log.setup()
        await log.append([created("s1", "alice")])
        await log.append([added("s1", msg("user", "one"))])
        await log.close()

    async def flush() -> None:
        log = fresh_log()
        await delete_prefix(log.redis, key_prefix)  # Redis restarted empty
        await log.close()

    asyncio.run(write())
    code, out, err = run(capsys, "project", "--burst", "--lease-ttl-ms", "1000")
    assert code == 0, err
    asyncio.run(flush())
    code, out, err = run(capsys, "recover-log")
    assert code == 0, err
    assert "recover-log: 2" in err and "recovered: 2 events" in out

    async def after() -> None:
        again = EventLog(
            aioredis.Redis.from_url(REDIS_URL), LogSettings(prefix=key_prefix, partitions=PARTITIONS)
        )
        try:
            assert (await again.append([added("s1", msg("user", "two"))])).version == 3
            with pytest.raises(PermissionDenied):
                await again.append([created("s1", "mallory")])
        finally:
            await again.close()

    asyncio.run(after())


async def test_a_retry_after_recovery_appends_nothing(event_log: EventLog, read_model: ReadModel) -> None:
    """The event ids of the dedup window come back: a client that retries an append acknowledged before the
    loss (its reply lost, say) gets the first result, not a second copy."""
    await event_log.append([created("s1", "alice")])
    event = added("s1", msg("user", "once"))
    first = await event_log.append([event])
    await project(event_log, read_model)
    await delete_prefix(event_log.redis, event_log.settings.prefix)
    await recover_log(event_log, read_model)
    again = await event_log.append([event])
    assert again.duplicate and again.message_count == first.message_count  # the first result, as ever
    assert (again.version, again.position, again.event_ids) == (
        first.version,
        first.position,
        first.event_ids,
    )
    ttl = await event_log.redis.ttl(event_log.keys.idempotency(first.partition, "default", str(event.id)))
    assert 0 < ttl <= event_log.settings.dedup_window_s
    await project(event_log, read_model)
    assert [m.content for m in (await read_model.get_messages("default", "s1")).messages] == ["once"]


async def test_after_recovery_a_batch_retry_is_answered_and_an_id_on_another_session_refused(
    event_log: EventLog, read_model: ReadModel
) -> None:
    """recover-log remembers each event on its own (the archive does not say which went together), naming its
    aggregate: a retried two-event append is still a retry, and its ids stay refused on another session."""
    await event_log.append([created("s1", "alice")])
    batch = [added("s1", msg("user", "one")), added("s1", msg("assistant", "two"))]
    first = await event_log.append(batch)
    await project(event_log, read_model)
    await delete_prefix(event_log.redis, event_log.settings.prefix)
    await recover_log(event_log, read_model)
    again = await event_log.append(batch)
    assert again.duplicate and again.position is not None
    assert position_key(again.position) <= position_key(first.position)
    # Another session of the same partition (event ids are remembered per partition and tenant).
    other = next(
        f"s{n}"
        for n in range(2, 1000)
        if partition_of("default", "session", f"s{n}", event_log.partitions) == first.partition
    )
    reuse = msgspec.structs.replace(created(other, "bob"), id=batch[1].id)
    with pytest.raises(DuplicateEventId) as err:
        await event_log.append([reuse])
    assert err.value.code == "event_id_reused"
    assert not (await event_log.aggregate("default", "session", other)).exists

"""``events.driver``: the one translation of redis-py's failures, and the deadline of a Redis call."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from events.driver import redis_call, redis_errors
from events.errors import Conflict, SessionsError, Unavailable


@pytest.mark.parametrize(
    ("raised", "expected", "code"),
    [
        (RedisConnectionError("refused"), Unavailable, "unavailable"),
        (RedisTimeoutError("Timeout reading"), Unavailable, "unavailable"),
        (ConnectionResetError("reset"), Unavailable, "unavailable"),
        (
            ResponseError('version_conflict {"message": "v3", "current_version": 3}'),
            Conflict,
            "version_conflict",
        ),
        (ResponseError("READONLY You can't write against a read only replica."), Unavailable, "redis_error"),
        (DataError("bad argument"), Unavailable, "redis_error"),
    ],
)
async def test_each_failure_becomes_the_projects_error(
    raised: Exception, expected: type[SessionsError], code: str
) -> None:
    with pytest.raises(expected) as sync_info, redis_errors():
        raise raised
    with pytest.raises(expected) as async_info:
        async with redis_call(1.0):
            raise raised
    for info in (sync_info, async_info):
        assert info.value.code == code and info.value.__cause__ is raised


async def test_what_is_not_a_driver_failure_goes_up_as_it_is() -> None:
    own = Conflict("ours")
    for error in (own, KeyError("k"), asyncio.CancelledError()):
        with pytest.raises(type(error)) as info:
            async with redis_call(1.0):
                raise error
        assert info.value is error


async def test_a_call_that_does_not_answer_ends_at_its_deadline() -> None:
    t0 = time.monotonic()
    with pytest.raises(Unavailable, match=r"no answer within 0\.2 s"):
        async with redis_call(0.2):
            await asyncio.Event().wait()  # a frozen server: never answers
    assert 0.15 < time.monotonic() - t0 < 1.0


async def test_no_deadline_means_none_of_ours() -> None:
    async with redis_call(None):
        await asyncio.sleep(0.01)


async def test_a_blocking_read_stays_below_the_call_bound() -> None:
    """XREAD's BLOCK is not covered by redis-py's socket timeout: a block longer than the bound would turn an
    idle stream into 'cannot reach Redis'. The log blocks at most half the bound; the caller loops."""
    import fakeredis

    from events import EventLog, LogSettings

    log = EventLog(fakeredis.FakeAsyncRedis(), LogSettings(prefix="drv", partitions=2, timeout_s=0.4))
    t0 = time.monotonic()
    assert await log.read(0, block_ms=5000) == []
    assert time.monotonic() - t0 < 1.5
    await log.close()

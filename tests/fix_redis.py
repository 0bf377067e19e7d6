"""Redis fixtures: every log test runs against fakeredis AND the real Redis (127.0.0.1:6379 by default).

A run where the real Redis is unreachable fails loudly with the command that starts it; it never skips.
Each test gets its own key prefix, and its keys are deleted afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import fakeredis
import pytest
import redis.asyncio as aioredis

from events import EventLog, LogSettings

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
START_REDIS = (
    'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no '
    "--dir /var/lib/redis --logfile /var/log/redis/ci.log"
)


async def real_redis() -> aioredis.Redis:
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except Exception as e:
        await client.aclose()
        pytest.fail(f"the real Redis at {REDIS_URL} is unreachable ({e}); start it with:\n  {START_REDIS}")
    return client


async def delete_prefix(client: aioredis.Redis, prefix: str) -> None:
    batch = []
    async for key in client.scan_iter(match=f"{prefix}:*", count=1000):
        batch.append(key)
        if len(batch) >= 500:
            await client.delete(*batch)
            batch = []
    if batch:
        await client.delete(*batch)


@pytest.fixture(params=["fakeredis", "redis"])
async def redis_client(request: pytest.FixtureRequest) -> AsyncIterator[aioredis.Redis]:
    """An asyncio Redis client: fakeredis (with Lua) or the real server."""
    client = fakeredis.FakeAsyncRedis() if request.param == "fakeredis" else await real_redis()
    yield client
    await client.aclose()


@pytest.fixture
def key_prefix() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def log_settings(key_prefix: str) -> LogSettings:
    return LogSettings(prefix=key_prefix, partitions=8)


@pytest.fixture
async def event_log(redis_client: aioredis.Redis, log_settings: LogSettings) -> AsyncIterator[EventLog]:
    """A set-up log under a fresh prefix, on both backends."""
    log = EventLog(redis_client, log_settings)
    await log.setup()
    yield log
    await delete_prefix(redis_client, log_settings.prefix)

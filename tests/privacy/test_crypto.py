"""Sealing and opening values, and the per-user data keys in Redis (fakeredis and the real one)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import fakeredis
import pytest

from events.keys import Keys
from service.keyring import DataKeys
from service.sealing import (
    DataKey,
    Erased,
    aad,
    is_sealed,
    key_id_of,
    open_text,
    open_value,
    seal_text,
    seal_value,
)
from tests.fix_redis import delete_prefix, real_redis

KEY = DataKey("t1", "alice", "00112233aabbccdd", bytes(range(32)))
HERE = aad("t1", "alice", "session", "s1")


def test_a_sealed_text_opens_with_its_key_and_place() -> None:
    sealed = seal_text(KEY, HERE, "the secret: 42")
    assert is_sealed(sealed) and "secret" not in sealed
    assert key_id_of(sealed) == KEY.id
    assert open_text(KEY, HERE, sealed) == "the secret: 42"
    assert seal_text(KEY, HERE, "the secret: 42") != sealed  # a fresh nonce every time


@pytest.mark.parametrize("value", [None, 0, 1.5, "text", [1, "two"], {"a": {"b": [True, None]}}])
def test_any_json_value_round_trips(value: Any) -> None:
    assert open_value(KEY, HERE, seal_value(KEY, HERE, value)) == value


def test_a_sealed_value_does_not_open_elsewhere() -> None:
    sealed = seal_text(KEY, HERE, "x")
    other_key = DataKey("t1", "alice", KEY.id, bytes(32))  # same id, other secret (a forged key)
    cases = [
        (None, HERE, sealed),  # the key is gone
        (DataKey("t1", "alice", "ffffffffffffffff", KEY.secret), HERE, sealed),  # a new key of the user
        (other_key, HERE, sealed),
        (KEY, aad("t1", "bob", "session", "s1"), sealed),  # moved to another user
        (KEY, aad("t2", "alice", "session", "s1"), sealed),  # another tenant
        (KEY, aad("t1", "alice", "session", "s2"), sealed),  # another session
        (KEY, HERE, sealed[:-6] + ("A" if sealed[-6] != "A" else "B") + sealed[-5:]),  # tampered
        (KEY, HERE, sealed + "!"),  # not base64
    ]
    for key, where, text in cases:
        with pytest.raises(Erased):
            open_text(key, where, text)


@pytest.fixture(params=["fakeredis", "redis"])
async def redis_client(request: pytest.FixtureRequest, key_prefix: str) -> AsyncIterator[Any]:
    client = fakeredis.FakeAsyncRedis() if request.param == "fakeredis" else await real_redis()
    yield client
    await delete_prefix(client, key_prefix)
    await client.aclose()


async def test_a_key_is_created_once_and_shared(redis_client: Any, key_prefix: str) -> None:
    keys = Keys(key_prefix)
    a, b = DataKeys(redis_client, keys), DataKeys(redis_client, keys)
    assert await a.get("t1", "alice") is None
    # Two processes creating the user's first key at once agree on one (SET NX).
    ka, kb = await asyncio.gather(a.for_write("t1", "alice"), b.for_write("t1", "alice"))
    assert ka == kb and len(ka.secret) == 32
    assert ka.name == f"dek:t1:alice:{ka.id}"
    assert await redis_client.exists(keys.data_key("t1", "alice")) == 1
    assert (await a.for_write("t2", "alice")) != ka  # per tenant


async def test_destroy_erases_at_once_here_and_after_the_cache_elsewhere(
    redis_client: Any, key_prefix: str
) -> None:
    now = [0.0]
    keys = Keys(key_prefix)
    here = DataKeys(redis_client, keys, ttl_s=2.0, clock=lambda: now[0])
    elsewhere = DataKeys(redis_client, keys, ttl_s=2.0, clock=lambda: now[0])
    key = await here.for_write("t1", "alice")
    assert await elsewhere.get("t1", "alice") == key
    assert await here.destroy("t1", "alice") is True
    assert await here.get("t1", "alice") is None
    assert await elsewhere.get("t1", "alice") == key  # cached for ttl_s
    now[0] = 2.5
    assert await elsewhere.get("t1", "alice") is None
    assert await here.destroy("t1", "alice") is False  # idempotent
    fresh = await here.for_write("t1", "alice")
    assert fresh.id != key.id and fresh.secret != key.secret

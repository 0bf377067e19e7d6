"""Data keys kept durably (issue 15 item 8): each user's data key wrapped under the key-encryption key and
stored beside the read models, cached in Redis; lost from Redis -> recovered from the durable copy;
destroyed everywhere on erasure; kept across a rebuild."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import os
from collections.abc import AsyncIterator
from pathlib import Path

import fakeredis
import httpx
import pytest

from events import EventLog, LogSettings
from events.errors import ConfigurationError, Unavailable
from events.keys import Keys
from projections.api import ReadModel
from projections.memory import InMemoryReadModel
from projections.postgres import PostgresReadModel
from service.app import Application
from service.http.app import create_app
from service.keyring import TOMBSTONE, DataKeys, KeyStore, load_kek
from service.settings import ServiceSettings
from tests.fix_pg import PG_DSN
from tests.fix_redis import delete_prefix, real_redis

from .erasure_helpers import CANARY, write_user

KEK = os.urandom(32)
KEK_B64 = base64.b64encode(KEK).decode()


@pytest.fixture(params=["memory", "postgres"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[ReadModel]:
    if request.param == "memory":
        yield InMemoryReadModel()
        return
    rm = await PostgresReadModel.open(PG_DSN, request.getfixturevalue("pg_schema"), min_size=1, max_size=2)
    try:
        yield rm
    finally:
        await rm.close()


def keyring(redis: fakeredis.FakeAsyncRedis, store: ReadModel, kek: bytes = KEK) -> DataKeys:
    assert isinstance(store, KeyStore)
    return DataKeys(redis, Keys("t"), store=store, kek=kek)


async def test_a_key_lost_from_redis_comes_back_from_the_durable_copy(store: ReadModel) -> None:
    redis = fakeredis.FakeAsyncRedis()
    first = await keyring(redis, store).for_write("default", "alice")
    await redis.flushall()  # Redis restarted empty
    again = await keyring(redis, store).get("default", "alice")  # another process: no cache
    assert again == first
    assert await redis.get(Keys("t").data_key("default", "alice")) is not None  # cached again
    assert isinstance(store, KeyStore)
    stored = await store.load_data_key("default", "alice")
    assert stored is not None and stored[0] == first.id and first.secret not in stored[1]  # wrapped


async def test_erasure_destroys_every_copy(store: ReadModel) -> None:
    redis = fakeredis.FakeAsyncRedis()
    keys = keyring(redis, store)
    await keys.for_write("default", "alice")
    assert await keys.destroy("default", "alice")
    assert isinstance(store, KeyStore)
    assert await store.load_data_key("default", "alice") is None
    assert await redis.get(Keys("t").data_key("default", "alice")) in (None, TOMBSTONE.encode())
    assert await keyring(redis, store).get("default", "alice") is None
    # Destroyed in the store even by a process without the KEK.
    await keys.for_write("default", "bob")
    assert await DataKeys(redis, Keys("t"), store=store, kek=None).destroy("default", "bob")
    assert await store.load_data_key("default", "bob") is None


async def test_processes_racing_agree_on_one_key(store: ReadModel) -> None:
    redis = fakeredis.FakeAsyncRedis()
    made = await asyncio.gather(*(keyring(redis, store).for_write("default", "carol") for _ in range(8)))
    assert len({k.id for k in made}) == 1
    await redis.flushall()
    assert await keyring(redis, store).get("default", "carol") == made[0]


async def test_a_key_cached_before_it_was_stored_is_stored_on_first_use(store: ReadModel) -> None:
    redis = fakeredis.FakeAsyncRedis()
    legacy = await DataKeys(redis, Keys("t")).for_write("default", "dan")  # Redis only (no KEK then)
    assert await keyring(redis, store).get("default", "dan") == legacy
    await redis.flushall()
    assert await keyring(redis, store).get("default", "dan") == legacy


async def test_a_wrong_kek_is_an_error_not_an_erasure(store: ReadModel) -> None:
    redis = fakeredis.FakeAsyncRedis()
    await keyring(redis, store).for_write("default", "erin")
    await redis.flushall()
    with pytest.raises(ConfigurationError) as info:
        await keyring(redis, store, kek=os.urandom(32)).get("default", "erin")
    assert info.value.code == "kek_mismatch"


async def test_a_rebuild_keeps_the_keys(store: ReadModel) -> None:
    redis = fakeredis.FakeAsyncRedis()
    key = await keyring(redis, store).for_write("default", "fay")
    shadow = await store.open_shadow(fresh=True)  # type: ignore[attr-defined]
    await store.switch_to(shadow)  # type: ignore[attr-defined]
    await redis.flushall()
    assert await keyring(redis, store).get("default", "fay") == key


def test_the_kek_setting(tmp_path: Path) -> None:
    assert load_kek(None, None) is None
    assert load_kek(KEK_B64, None) == KEK
    f = tmp_path / "kek"
    f.write_text(KEK_B64 + "\n")
    assert ServiceSettings.from_env({"SESSIONS_KEK_FILE": str(f)}).key_encryption_key() == KEK
    settings = ServiceSettings.from_env({"SESSIONS_KEK": KEK_B64})
    assert settings.key_encryption_key() == KEK and KEK_B64 not in repr(settings)
    for bad in ({"SESSIONS_KEK": "short"}, {"SESSIONS_KEK": base64.b64encode(b"x" * 16).decode()}):
        with pytest.raises(ConfigurationError) as info:
            ServiceSettings.from_env(bad)
        assert info.value.code == "invalid_kek"
    with pytest.raises(ConfigurationError):
        ServiceSettings.from_env({"SESSIONS_KEK_FILE": str(tmp_path / "missing")})


@pytest.fixture
async def kek_app(
    backend: str, key_prefix: str, request: pytest.FixtureRequest
) -> AsyncIterator[Application]:
    log_settings = LogSettings(prefix=key_prefix, partitions=8)
    if backend == "embedded":
        log = EventLog(fakeredis.FakeAsyncRedis(), log_settings)
        read_model: ReadModel = InMemoryReadModel()
    else:
        log = EventLog(await real_redis(), log_settings)
        read_model = await PostgresReadModel.open(PG_DSN, request.getfixturevalue("pg_schema"), max_size=4)
    await log.setup()
    settings = dataclasses.replace(ServiceSettings(read_timeout_s=15.0, log=log_settings), kek=KEK_B64)
    app = Application(log, read_model, settings=settings, projector=True)
    await app.start()
    yield app
    await app.close()
    if isinstance(read_model, PostgresReadModel):
        await read_model.close()
    if backend == "real":
        await delete_prefix(log.redis, key_prefix)
    await log.close()


async def test_reads_open_after_redis_lost_the_keys(kek_app: Application) -> None:
    transport = httpx.ASGITransport(app=create_app(kek_app))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        await write_user(http, "gus", ["s-gus"])
        log = kek_app.log
        await log.redis.delete(log.keys.data_key("default", "gus"))  # what a Redis restarted empty lost
        kek_app.data_keys._cache.clear()
        messages = (await http.get("/v1/sessions/s-gus/messages")).json()["messages"]
        assert messages[0]["content"] == f"{CANARY}-question-s-gus"
        memory = (await http.get("/v1/users/gus/memory")).json()["memories"]
        assert memory == {"profile": {"deep": [f"{CANARY}-umem"]}}
        r = await http.post("/v1/users/gus/forget")
        assert r.status_code == 200, r.text
        assert isinstance(kek_app.read_model, KeyStore)
        assert await kek_app.read_model.load_data_key("default", "gus") is None
        assert await log.redis.get(log.keys.data_key("default", "gus")) in (None, TOMBSTONE.encode())


async def test_a_store_outage_does_not_fail_a_read_of_a_cached_key() -> None:
    """Keeping a Redis-only key durably is best effort on a read: the read still opens, the next one retries;
    a new key is never handed out before it is stored."""

    class Down(InMemoryReadModel):
        down = True

        async def save_data_key(
            self, tenant: str, user_id: str, key_id: str, wrapped: bytes
        ) -> tuple[str, bytes]:
            if self.down:
                raise Unavailable("PostgreSQL is down")
            return await super().save_data_key(tenant, user_id, key_id, wrapped)

    redis = fakeredis.FakeAsyncRedis()
    legacy = await DataKeys(redis, Keys("t")).for_write("default", "hal")
    store = Down()
    assert await keyring(redis, store).get("default", "hal") == legacy
    assert await store.load_data_key("default", "hal") is None
    with pytest.raises(Unavailable):
        await keyring(redis, store).for_write("default", "ida")
    assert await redis.get(Keys("t").data_key("default", "ida")) is None
    store.down = False
    assert await keyring(redis, store).get("default", "hal") == legacy
    assert await store.load_data_key("default", "hal") is not None


async def test_a_key_loaded_while_it_is_destroyed_is_not_cached_again(store: ReadModel) -> None:
    """Another process loads the key from the store just before an erasure deletes it, and caches it in
    Redis just after: the erasure's tombstone makes that fail, so the key does not come back."""
    redis = fakeredis.FakeAsyncRedis()
    eraser = keyring(redis, store)
    old = await eraser.for_write("default", "jo")
    await redis.delete(Keys("t").data_key("default", "jo"))  # not in Redis: the loader goes to the store
    loader = keyring(redis, store)
    assert isinstance(store, KeyStore)
    load = store.load_data_key

    async def load_then_erase(tenant: str, user_id: str) -> tuple[str, bytes] | None:
        found = await load(tenant, user_id)
        await eraser.destroy(tenant, user_id)
        return found

    store.load_data_key = load_then_erase  # type: ignore[method-assign]
    assert await loader.get("default", "jo") is None
    store.load_data_key = load  # type: ignore[method-assign]
    assert await keyring(redis, store).get("default", "jo") is None
    # The user id comes back: a new key at once, kept durably.
    new = await keyring(redis, store).for_write("default", "jo")
    assert new.id != old.id
    await redis.flushall()
    assert await keyring(redis, store).get("default", "jo") == new

"""Per-user data keys in Redis (``events.keys.Keys.data_key``): created on first use (``SET NX``, so
processes racing agree on one key), cached in process for a short time, destroyed on erasure. The sealing
itself is pure (``service.sealing``)."""

from __future__ import annotations

import base64
import binascii
import secrets
import time
from collections.abc import Callable

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from redis.asyncio import Redis

from events.driver import DEFAULT_TIMEOUT_S, redis_call
from events.errors import Unavailable
from events.keys import Keys
from service.sealing import DataKey

__all__ = ["DataKeys"]


def _parse(tenant: str, user_id: str, raw: bytes | str) -> DataKey | None:
    text = raw.decode() if isinstance(raw, bytes) else raw
    key_id, _, b64 = text.partition(":")
    try:
        secret = base64.b64decode(b64, validate=True)
    except binascii.Error:
        return None
    return DataKey(tenant, user_id, key_id, secret) if len(secret) == 32 else None


class DataKeys:
    """The data keys of one deployment, with a short in-process cache."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        *,
        ttl_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.ttl_s = ttl_s
        self.timeout_s = timeout_s  # one call to Redis (events.driver.redis_call)
        self._clock = clock
        self._cache: dict[tuple[str, str], tuple[float, DataKey]] = {}

    def _cached(self, tenant: str, user_id: str) -> DataKey | None:
        hit = self._cache.get((tenant, user_id))
        if hit is not None and hit[0] > self._clock():
            return hit[1]
        return None

    def _remember(self, key: DataKey) -> DataKey:
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[(key.tenant, key.user_id)] = (self._clock() + self.ttl_s, key)
        return key

    async def get(self, tenant: str, user_id: str) -> DataKey | None:
        """The user's key, or None when they have none (never had one, or were forgotten)."""
        found = self._cached(tenant, user_id)
        if found is not None:
            return found
        async with redis_call(self.timeout_s):
            raw = await self.redis.get(self.keys.data_key(tenant, user_id))
        key = _parse(tenant, user_id, raw) if raw is not None else None
        return self._remember(key) if key is not None else None

    async def for_write(self, tenant: str, user_id: str) -> DataKey:
        """The user's key, created now if they have none."""
        found = await self.get(tenant, user_id)
        if found is not None:
            return found
        new = DataKey(tenant, user_id, secrets.token_hex(8), AESGCM.generate_key(bit_length=256))
        name = self.keys.data_key(tenant, user_id)
        async with redis_call(self.timeout_s):
            created = await self.redis.set(name, f"{new.id}:{base64.b64encode(new.secret).decode()}", nx=True)
        if created:
            return self._remember(new)
        async with redis_call(self.timeout_s):
            raw = await self.redis.get(name)  # another process won the race: use its key
        key = _parse(tenant, user_id, raw) if raw is not None else None
        if key is None:
            raise Unavailable(f"the data key of user {user_id} changed while it was being created; retry")
        return self._remember(key)

    async def destroy(self, tenant: str, user_id: str) -> bool:
        """Delete the user's key (True if there was one). Everything sealed with it is unreadable from now on
        (other processes: once their cache entry expires, ``ttl_s``)."""
        self._cache.pop((tenant, user_id), None)
        async with redis_call(self.timeout_s):
            return bool(await self.redis.delete(self.keys.data_key(tenant, user_id)))

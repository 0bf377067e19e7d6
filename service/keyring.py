"""Per-user data keys: cached in Redis (``events.keys.Keys.data_key``), kept durably beside the read models,
wrapped under the deployment's key-encryption key (envelope encryption), destroyed everywhere on erasure.
The sealing itself is pure (``service.sealing``).

* ``get``: the process cache (``ttl_s``), then Redis, then the durable copy (``KeyStore``: a table of both
  read models), unwrapped with the KEK and put back into Redis. A Redis that lost its data loses no key.
* ``for_write``: an existing key, or a new one: stored durably first (insert-if-absent: processes racing
  agree on the one stored), then cached in Redis (``SET NX``).
* ``destroy``: the durable copy and Redis' (crypto-shredding).

The KEK comes from ``SESSIONS_KEK`` or ``SESSIONS_KEK_FILE`` (base64 of 32 bytes; ``load_kek``). Without
one there is no durable copy: keys live in Redis only, as before, and a Redis that loses its data loses them
(``Application`` says so in the log on the real servers). A wrapped key is ``nonce || AES-256-GCM(KEK,
key)``, bound (associated data) to its tenant, user and key id, so a row moved to another user does not open.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import secrets
import time
from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from redis.asyncio import Redis

from events.driver import DEFAULT_TIMEOUT_S, redis_call
from events.errors import ConfigurationError, Unavailable
from events.keys import Keys
from projections.api import ReadModel
from service.sealing import NONCE_BYTES, DataKey

__all__ = ["DataKeys", "KeyStore", "load_kek", "unwrap", "wrap"]


KeyStore = ReadModel
"""The durable copy of the wrapped data keys: the read model's ``load_data_key`` / ``save_data_key`` /
``delete_data_key`` (``projections.api.ReadModel``)."""


def load_kek(value: str | None, path: str | None) -> bytes | None:
    """The key-encryption key: base64 of 32 bytes, given directly or in a file (whitespace ignored)."""
    if value and path:
        raise ConfigurationError("set SESSIONS_KEK or SESSIONS_KEK_FILE, not both", code="invalid_kek")
    if path:
        try:
            with open(path, encoding="ascii") as f:
                value = f.read()
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigurationError(f"cannot read SESSIONS_KEK_FILE {path}: {e}", code="invalid_kek") from e
    if not value:
        return None
    try:
        kek = base64.b64decode("".join(value.split()), validate=True)
    except binascii.Error as e:
        raise ConfigurationError("the KEK must be base64 (of 32 random bytes)", code="invalid_kek") from e
    if len(kek) != 32:
        raise ConfigurationError(
            f"the KEK must be 32 bytes (base64 of 32 random bytes), not {len(kek)}", code="invalid_kek"
        )
    return kek


def _kek_aad(tenant: str, user_id: str, key_id: str) -> bytes:
    return f"dek\x1f{tenant}\x1f{user_id}\x1f{key_id}".encode()


def wrap(kek: bytes, key: DataKey) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(kek).encrypt(nonce, key.secret, _kek_aad(key.tenant, key.user_id, key.id))


def unwrap(kek: bytes, tenant: str, user_id: str, key_id: str, wrapped: bytes) -> DataKey:
    """The data key, or ``ConfigurationError`` (``kek_mismatch``): a wrong KEK must not read as erased."""
    try:
        secret = AESGCM(kek).decrypt(
            wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], _kek_aad(tenant, user_id, key_id)
        )
    except (InvalidTag, ValueError) as e:
        raise ConfigurationError(
            f"the stored data key of user {user_id} does not open with this KEK: is SESSIONS_KEK the"
            " deployment's?",
            code="kek_mismatch",
        ) from e
    return DataKey(tenant, user_id, key_id, secret)


# What an erasure leaves in Redis for a little while instead of the key: a process that loaded the key from
# the store just before the erasure cannot cache it again (SET NX fails), and one that read it from Redis
# just before cannot store it again unseen (it looks for this after storing). A user id that comes back
# gets a new key at once (stored durably first, then put over the tombstone). Without a durable copy, a
# plain DEL, as there is nothing to resurrect the key from.
TOMBSTONE = "destroyed"
TOMBSTONE_S = 10


def _parse(tenant: str, user_id: str, raw: bytes | str) -> DataKey | None:
    text = raw.decode() if isinstance(raw, bytes) else raw
    key_id, _, b64 = text.partition(":")
    try:
        secret = base64.b64decode(b64, validate=True)
    except binascii.Error:
        return None
    return DataKey(tenant, user_id, key_id, secret) if len(secret) == 32 else None


def _cached_form(key: DataKey) -> str:
    return f"{key.id}:{base64.b64encode(key.secret).decode()}"


class DataKeys:
    """The data keys of one deployment, with a short in-process cache. With ``store`` and ``kek``, each key
    is kept durably too (see the module docstring)."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        *,
        store: KeyStore | None = None,
        kek: bytes | None = None,
        ttl_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.store = store if kek is not None else None  # no KEK: no durable copy to read or write
        self._erase_from = store  # but an erasure deletes one kept earlier all the same
        self.kek = kek
        self.ttl_s = ttl_s
        self.timeout_s = timeout_s  # one call to Redis (events.driver.redis_call)
        self._clock = clock
        self._cache: dict[tuple[str, str], tuple[float, DataKey]] = {}
        self._durable: set[tuple[str, str]] = set()  # users whose key this process knows to be stored

    @property
    def durable(self) -> bool:
        return self.store is not None

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

    async def _redis_get(self, tenant: str, user_id: str) -> DataKey | None:
        async with redis_call(self.timeout_s):
            raw = await self.redis.get(self.keys.data_key(tenant, user_id))
        return _parse(tenant, user_id, raw) if raw is not None else None

    async def _redis_put(self, key: DataKey) -> DataKey | None:
        """Cache ``key`` in Redis unless it holds one; returns the one Redis holds then."""
        name = self.keys.data_key(key.tenant, key.user_id)
        async with redis_call(self.timeout_s):
            if await self.redis.set(name, _cached_form(key), nx=True):
                return key
            raw = await self.redis.get(name)
        return _parse(key.tenant, key.user_id, raw) if raw is not None else None

    async def _store_put(self, key: DataKey) -> DataKey:
        """Keep ``key`` durably unless the user has a stored key; returns the stored one."""
        assert self.store is not None and self.kek is not None
        key_id, wrapped = await self.store.save_data_key(key.tenant, key.user_id, key.id, wrap(self.kek, key))
        self._durable.add((key.tenant, key.user_id))
        if key_id == key.id:
            return key
        return unwrap(self.kek, key.tenant, key.user_id, key_id, wrapped)

    async def _from_store(self, tenant: str, user_id: str) -> DataKey | None:
        if self.store is None or self.kek is None:
            return None
        found = await self.store.load_data_key(tenant, user_id)
        if found is None:
            return None
        self._durable.add((tenant, user_id))
        key = unwrap(self.kek, tenant, user_id, *found)
        cached = await self._redis_put(key)  # Redis lost it: cache it again
        # A tombstone: erased since the load. Another key: created since (stored durably before it was
        # cached, so it is the newer one).
        return cached

    async def _tombstoned(self, tenant: str, user_id: str) -> bool:
        async with redis_call(self.timeout_s):
            raw = await self.redis.get(self.keys.data_key(tenant, user_id))
        return raw is not None and (raw.decode() if isinstance(raw, bytes) else raw) == TOMBSTONE

    async def get(self, tenant: str, user_id: str) -> DataKey | None:
        """The user's key, or None when they have none (never had one, or were forgotten)."""
        found = self._cached(tenant, user_id)
        if found is not None:
            return found
        key = await self._redis_get(tenant, user_id)
        if key is not None:
            if self.store is not None and (tenant, user_id) not in self._durable:
                # A key cached before it was kept durably: keep it now, when the store answers (a read
                # must not fail for it; the next use tries again).
                with contextlib.suppress(Unavailable):
                    key = await self._store_put(key)
                    if await self._tombstoned(tenant, user_id):  # erased meanwhile: undo the store
                        await self._erase(tenant, user_id)
                        return None
        else:
            key = await self._from_store(tenant, user_id)
        return self._remember(key) if key is not None else None

    async def for_write(self, tenant: str, user_id: str) -> DataKey:
        """The user's key, created now if they have none."""
        found = await self.get(tenant, user_id)
        if found is not None:
            return found
        new = DataKey(tenant, user_id, secrets.token_hex(8), AESGCM.generate_key(bit_length=256))
        if self.store is not None:
            new = await self._store_put(new)  # durable first: the stored key is the one
        key = await self._redis_put(new)
        if key is None and self.store is None:
            raise Unavailable(f"the data key of user {user_id} changed while it was being created; retry")
        if key is None or (self.store is not None and key.id != new.id):
            # A tombstone (the user id comes back right after an erasure), or a key the store did not win
            # with: the key just stored rules.
            key = new
            async with redis_call(self.timeout_s):
                await self.redis.set(self.keys.data_key(tenant, user_id), _cached_form(key))
        return self._remember(key)

    async def destroy(self, tenant: str, user_id: str) -> bool:
        """Delete the user's key everywhere (True if there was one). Everything sealed with it is unreadable
        from now on (other processes: once their cache entry expires, ``ttl_s``)."""
        return await self._erase(tenant, user_id)

    async def _erase(self, tenant: str, user_id: str) -> bool:
        self._cache.pop((tenant, user_id), None)
        self._durable.discard((tenant, user_id))
        stored = False
        if self._erase_from is not None:
            stored = await self._erase_from.delete_data_key(tenant, user_id)
        name = self.keys.data_key(tenant, user_id)
        async with redis_call(self.timeout_s), self.redis.pipeline(transaction=True) as pipe:
            pipe.get(name)
            if self.store is not None:  # only a durable copy in use can be loaded or stored back
                pipe.set(name, TOMBSTONE, ex=TOMBSTONE_S)
            else:
                pipe.delete(name)
            previous, _ = await pipe.execute()
        return stored or (previous is not None and _parse(tenant, user_id, previous) is not None)

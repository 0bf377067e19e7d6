"""Idempotency keys: a client's ``Idempotency-Key`` names one request, and its retries get the first answer.

The key becomes the event id of what the request appends (``event_id``), so the log's append script returns
the first append's result to a retry. The log remembers the result, not the request, so the request's
fingerprint is kept beside it (``claim``), for as long as the log remembers the event id (its dedup window):
a retry with the same key and another request is refused (``idempotency_key_reused``, 409) instead of
silently answering for the first one.
"""

from __future__ import annotations

import contextlib
import hashlib
import uuid
from typing import Any

import msgspec

from events.driver import redis_call
from events.errors import Unavailable
from events.keys import partition_of
from events.log import EventLog
from service.errors import BadRequest, IdempotencyKeyReused

__all__ = ["IDEMPOTENCY_NAMESPACE", "Claim", "event_id"]

# Fixed forever: an Idempotency-Key maps to the same event id in every process and every release.
IDEMPOTENCY_NAMESPACE = uuid.UUID("6f1d2a8e-3c4b-5d6e-8f70-112233445566")
MAX_KEY_LENGTH = 255


def event_id(tenant: str, scope: str, key: str) -> uuid.UUID:
    """The event id an Idempotency-Key stands for: a retry carries the same id, and the log returns the first
    append's result. ``scope`` names the target (the log remembers ids per partition, so the key must not be
    shared by two aggregates)."""
    if not key or len(key) > MAX_KEY_LENGTH:
        raise BadRequest(
            f"an Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters", code="invalid_idempotency_key"
        )
    return uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"{tenant}\x00{scope}\x00{key}")


def _fingerprint(request: Any) -> bytes:
    return hashlib.sha256(msgspec.json.encode(request)).hexdigest().encode()


class Claim:
    """A request's hold on its Idempotency-Key. ``await Claim.take(...)`` refuses a key another request used;
    ``release()`` gives the key back when the request was refused (so a corrected retry may use it)."""

    def __init__(self, log: EventLog, key: str, taken: bool) -> None:
        self._log, self._key, self._taken = log, key, taken

    @classmethod
    async def take(cls, log: EventLog, tenant: str, event: uuid.UUID, request: Any) -> Claim:
        # Placed by the key alone, not by the request's target: the same key aimed elsewhere is found.
        partition = partition_of(tenant, "request", str(event), log.partitions)
        key = log.keys.idempotency(partition, tenant, str(event)) + ":request"
        fingerprint = _fingerprint(request)
        async with redis_call(log.timeout_s):
            taken = bool(await log.redis.set(key, fingerprint, nx=True, ex=log.settings.dedup_window_s))
            first = None if taken else await log.redis.get(key)
        if first is not None and first != fingerprint:
            raise IdempotencyKeyReused(
                "this Idempotency-Key was used for another request; use a new key for a new request"
            )
        return cls(log, key, taken)

    async def release(self) -> None:
        if self._taken:
            # Else the key expires with the dedup window; a corrected retry needs a new key until then.
            with contextlib.suppress(Unavailable):
                async with redis_call(self._log.timeout_s):
                    await self._log.redis.delete(self._key)

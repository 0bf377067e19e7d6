"""Where redis-py meets the project: the one translation of its failures, and the bounds on waiting for it.

Everything that talks to the log's Redis (``events.log``, the leases, trim and status of ``consumers/``, the
data keys of ``service/``) calls it inside ``redis_errors()`` (blocking code, or a block with its own bound)
or ``redis_call(timeout_s)`` (asyncio: the same translation plus a deadline), so nothing above ``events/``
catches a redis-py exception. What a failure becomes (``events.errors``):

    redis.exceptions.ResponseError     the append script's refusal ``<code> {json}``: its typed error
                                       (``error_from_code``); anything else Redis refused: ``Unavailable``
                                       (``redis_error``)
    redis ConnectionError, TimeoutError, OSError, no answer by the deadline
                                       ``Unavailable`` (``unavailable``): "cannot reach Redis"
    any other redis.exceptions.RedisError
                                       ``Unavailable`` (``redis_error``)

Why a deadline of our own beside the client's socket timeouts: what ``socket_timeout`` covers differs across
redis-py versions (whether a read without an explicit timeout uses it, whether connecting does), and a frozen
server (SIGSTOP) accepts connections and never answers. ``asyncio.timeout`` bounds the call whatever the
version; redis-py drops a connection whose command was cancelled, so none is reused half-read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType

import msgspec
import redis
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .errors import SessionsError, Unavailable, error_from_code

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "as_project_error",
    "connect",
    "connect_blocking",
    "redis_call",
    "redis_errors",
    "translate_error",
]

DEFAULT_TIMEOUT_S = 2.0


def translate_error(e: ResponseError) -> SessionsError:
    """Turn the script's error reply ``<code> <json>`` into the typed error."""
    text = str(e)
    code, _, rest = text.partition(" ")
    if code.isidentifier() and code.islower() and rest.startswith("{"):
        # Redis appends " script: <sha>, on @user_script..." to script errors; cut at the JSON's end.
        body = rest[: rest.rfind("}") + 1]
        try:
            details = msgspec.json.decode(body)
        except msgspec.DecodeError:
            details = {"message": body}
        message = details.pop("message", code)
        return error_from_code(code, message, **details)
    if "NOSCRIPT" in text:
        return Unavailable("the append script is not loaded", code="script_not_loaded")
    return Unavailable(f"redis refused the command: {text}", code="redis_error")


def as_project_error(e: BaseException) -> SessionsError | None:
    """The project's error for a failure of a Redis call; None for what is not a driver failure (our own
    errors, cancellation, programming errors), which goes up as it is."""
    if isinstance(e, SessionsError):
        return None
    if isinstance(e, ResponseError):
        return translate_error(e)
    if isinstance(e, (RedisConnectionError, RedisTimeoutError, OSError)):
        # builtin TimeoutError (an OSError) is also what ``asyncio.timeout`` raises at the deadline
        return Unavailable(f"cannot reach Redis: {str(e) or 'no answer in time'}")
    if isinstance(e, RedisError):
        return Unavailable(f"redis failed: {e}", code="redis_error")
    return None


@contextmanager
def redis_errors() -> Iterator[None]:
    """Translate the failures of the Redis calls inside (as httpx's ``map_httpcore_exceptions``)."""
    try:
        yield
    except Exception as e:
        mapped = as_project_error(e)
        if mapped is None:
            raise
        raise mapped from e


class redis_call:  # lowercase: used as ``async with redis_call(t):``, like ``asyncio.timeout``
    """``async with redis_call(timeout_s):`` the Redis calls inside answer within ``timeout_s`` (None: no
    deadline of ours) or raise ``Unavailable``; every failure is translated as by ``redis_errors``.

    A class rather than a generator: it sits on the append's hot path."""

    __slots__ = ("_timeout", "timeout_s")

    def __init__(self, timeout_s: float | None) -> None:
        self.timeout_s = timeout_s
        self._timeout = asyncio.timeout(timeout_s)

    async def __aenter__(self) -> None:
        await self._timeout.__aenter__()

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            await self._timeout.__aexit__(et, e, tb)
        except TimeoutError as late:
            raise Unavailable(f"cannot reach Redis: no answer within {self.timeout_s:g} s") from late
        if e is not None:
            mapped = as_project_error(e)
            if mapped is not None:
                raise mapped from e


def connect(url: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> aioredis.Redis:
    """An asyncio client whose connects and reads give up after ``timeout_s`` (plus ``redis_call``'s own
    deadline where the log uses it)."""
    return aioredis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)


def connect_blocking(url: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> redis.Redis:
    """The blocking client of ``events.Publisher``, with the same bounds (no asyncio deadline there)."""
    return redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)

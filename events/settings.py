"""Settings of the event log: a frozen dataclass with defaults, read from the environment by ``from_env()``.

Environment variables (all optional):

=============================  =================  ==========================================================
``REDIS_URL``                   (embedded)         the Redis of the log (``redis://``, ``rediss://`` or
                                                   ``unix://``); absent: an in-process fakeredis
``SESSIONS_PARTITIONS``         16                 partition streams; fixed for a deployment
``SESSIONS_REDIS_PREFIX``       sessions           prefix of every Redis key
``SESSIONS_DEDUP_WINDOW_S``     86400              how long a used event id is remembered (idempotency)
``SESSIONS_REDIS_TIMEOUT_S``    2                  how long one call to Redis may take before ``Unavailable``
``SESSIONS_MAX_CONTENT_BYTES``  262144             bytes of one message's content
``SESSIONS_MAX_MESSAGES``       100                messages in one append
``SESSIONS_MAX_KEY_LENGTH``     256                characters of a memory key
``SESSIONS_MAX_VALUE_BYTES``    65536              bytes of one memory value (as JSON)
``SESSIONS_MAX_METADATA_BYTES`` 16384              bytes of session or message metadata (as JSON)
``SESSIONS_MAX_MEMORY_KEYS``    1000               memory keys in one scope
``SESSIONS_MAX_TOOL_CALLS``     128                tool calls in one assistant message
=============================  =================  ==========================================================

``from_env()`` refuses a value it cannot use with ``ConfigurationError`` (``invalid_setting``,
``invalid_redis_url``), before anything connects.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

from events.errors import ConfigurationError

__all__ = [
    "Limits",
    "LogSettings",
    "check_redis_url",
    "redacted",
]


@dataclass(frozen=True, slots=True)
class Limits:
    """Enforced by the append script itself, so no publisher can get around them."""

    max_content_bytes: int = 262_144
    max_messages: int = 100
    max_key_length: int = 256
    max_value_bytes: int = 65_536
    max_metadata_bytes: int = 16_384
    max_memory_keys: int = 1000
    max_tool_calls: int = 128
    max_id_length: int = 256

    def as_redis_hash(self) -> dict[str, int]:
        return asdict(self)


_LIMIT_ENV = {
    "max_content_bytes": "SESSIONS_MAX_CONTENT_BYTES",
    "max_messages": "SESSIONS_MAX_MESSAGES",
    "max_key_length": "SESSIONS_MAX_KEY_LENGTH",
    "max_value_bytes": "SESSIONS_MAX_VALUE_BYTES",
    "max_metadata_bytes": "SESSIONS_MAX_METADATA_BYTES",
    "max_memory_keys": "SESSIONS_MAX_MEMORY_KEYS",
    "max_tool_calls": "SESSIONS_MAX_TOOL_CALLS",
}


@dataclass(frozen=True, slots=True)
class LogSettings:
    redis_url: str | None = None
    partitions: int = 16
    prefix: str = "sessions"
    dedup_window_s: int = 86_400
    limits: Limits = field(default_factory=Limits)
    timeout_s: float = 2.0  # one call to Redis (events.driver): a frozen server never hangs a caller

    def __post_init__(self) -> None:
        if not 1 <= self.partitions <= 16384:
            raise ValueError("partitions must be between 1 and 16384")
        if self.dedup_window_s < 1:
            raise ValueError("the dedup window must be at least one second")
        if not self.timeout_s > 0:
            raise ValueError("the Redis timeout must be positive")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> LogSettings:
        env = os.environ if env is None else env
        try:
            limits = Limits(**{name: int(env[var]) for name, var in _LIMIT_ENV.items() if env.get(var)})
            settings = cls(
                redis_url=env.get("REDIS_URL") or None,
                partitions=int(env.get("SESSIONS_PARTITIONS") or 16),
                prefix=env.get("SESSIONS_REDIS_PREFIX") or "sessions",
                dedup_window_s=int(env.get("SESSIONS_DEDUP_WINDOW_S") or 86_400),
                limits=limits,
                timeout_s=float(env.get("SESSIONS_REDIS_TIMEOUT_S") or 2.0),
            )
        except ValueError as e:
            raise ConfigurationError(f"a log setting is not valid: {e}", code="invalid_setting") from e
        if settings.redis_url:
            check_redis_url(settings.redis_url)
        return settings


def check_redis_url(url: str) -> None:
    """Refuse a URL the Redis client cannot use (scheme, port, database), with the client's own reason; the
    client would otherwise raise it at the first command, far from the setting."""
    from redis.asyncio.connection import parse_url

    try:
        parse_url(url)
    except ValueError as e:
        raise ConfigurationError(f"REDIS_URL is not usable: {e}", code="invalid_redis_url") from e


def redacted(url: str) -> str:
    """``url`` fit for a log line: a password in it replaced by ``***``."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port is not None else "")
    return urlunsplit(parts._replace(netloc=netloc))

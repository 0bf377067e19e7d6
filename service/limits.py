"""Limits the edge enforces before anything reaches the log: request rate per key, page size, id formats.

The log's script checks the rest atomically (messages per append, content, memory value and metadata sizes,
``events.settings``); the body size is Litestar's ``request_max_body_size`` (``SESSIONS_MAX_BODY_BYTES``).

==================  ======================================================================================
request rate        token bucket per API key (per client address when no keys are configured):
                    ``SESSIONS_RATE_LIMIT=<rate>[/<burst>]`` requests a second; unset or ``0``: no limit.
                    Refused with 429 ``rate_limited`` + ``Retry-After`` (gRPC RESOURCE_EXHAUSTED)
page size           ``limit`` above ``MAX_PAGE`` (1000): 400 ``limit_too_large`` (never silently clamped)
session / user id   1 to 256 characters, no control character, no ``/`` (a path segment); a user id is also
                    checked by the log. Refused with 400 ``invalid_id``
memory key          1 to 256 characters, no control character: 400 ``invalid_key``
tenant              ``[a-z0-9][a-z0-9_-]{0,62}`` (keys name it; a tenant is never taken from a request when
                    keys are configured)
==================  ======================================================================================
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from .errors import BadRequest, ConfigurationError, RateLimited

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "MAX_ID_LENGTH",
    "MAX_PAGE",
    "TENANT_PATTERN",
    "RateLimit",
    "RateLimiter",
    "check_id",
    "check_key",
    "check_limit",
    "check_tenant",
    "parse_rate_limit",
]

DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024  # 100 messages of the default 256 KiB content fit with room to spare
MAX_PAGE = 1000
MAX_ID_LENGTH = 256
TENANT_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Buckets kept at most; beyond it the full ones (idle keys) are dropped, so the map cannot grow unbounded.
_MAX_BUCKETS = 10_000


def check_id(value: str, field: str) -> str:
    """A session or user id as the API takes it: 1 to 256 characters, no control character, no '/'."""
    if not value or len(value) > MAX_ID_LENGTH or _CONTROL.search(value) or "/" in value:
        raise BadRequest(
            f"{field} must be 1 to {MAX_ID_LENGTH} characters without '/' or control characters",
            code="invalid_id",
            field=field,
        )
    return value


def check_key(value: str) -> str:
    """A memory key: 1 to 256 characters, no control character ('/' allowed)."""
    if not value or len(value) > MAX_ID_LENGTH or _CONTROL.search(value):
        raise BadRequest(
            f"a memory key must be 1 to {MAX_ID_LENGTH} characters without control characters",
            code="invalid_key",
        )
    return value


def check_tenant(value: str) -> str:
    if not TENANT_PATTERN.match(value):
        raise BadRequest(
            "a tenant is 1 to 63 characters of a-z, 0-9, '_' and '-', starting with a letter or digit",
            code="invalid_tenant",
        )
    return value


def check_limit(value: int | None) -> int | None:
    if value is not None and value > MAX_PAGE:
        raise BadRequest(f"limit is at most {MAX_PAGE}", code="limit_too_large", limit=MAX_PAGE)
    return value


@dataclass(frozen=True, slots=True)
class RateLimit:
    """``rate`` requests a second on average, up to ``burst`` at once."""

    rate: float
    burst: float

    def __post_init__(self) -> None:
        if not (self.rate > 0 and self.burst >= 1 and math.isfinite(self.rate) and math.isfinite(self.burst)):
            raise ConfigurationError(
                "SESSIONS_RATE_LIMIT needs a positive rate and a burst of at least 1", code="invalid_setting"
            )


def parse_rate_limit(text: str | None) -> RateLimit | None:
    """``"<rate>"`` (burst = rate, at least 1) or ``"<rate>/<burst>"``; empty or ``"0"``: no limit."""
    if text is None or not text.strip() or text.strip() == "0":
        return None
    rate_s, _, burst_s = text.strip().partition("/")
    try:
        rate = float(rate_s)
        burst = float(burst_s) if burst_s else max(rate, 1.0)
    except ValueError as e:
        raise ConfigurationError(
            f"SESSIONS_RATE_LIMIT must be <rate>[/<burst>], not {text!r}", code="invalid_setting"
        ) from e
    return RateLimit(rate, burst)


class RateLimiter:
    """Token buckets by name (an API key id), in this process. ``take`` spends one token or raises
    ``RateLimited`` with the seconds until one is back."""

    def __init__(self, limit: RateLimit, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # name -> (tokens, at)

    def _tokens(self, name: str, now: float) -> float:
        tokens, at = self._buckets.get(name, (self.limit.burst, now))
        return min(self.limit.burst, tokens + (now - at) * self.limit.rate)

    def take(self, name: str) -> None:
        now = self.clock()
        tokens = self._tokens(name, now)
        if tokens < 1.0:
            self._buckets[name] = (tokens, now)
            wait = (1.0 - tokens) / self.limit.rate
            raise RateLimited(
                f"too many requests; retry after {math.ceil(wait)} s", retry_after=max(1, math.ceil(wait))
            )
        self._buckets[name] = (tokens - 1.0, now)
        if len(self._buckets) > _MAX_BUCKETS:
            self._evict(now)

    def _evict(self, now: float) -> None:
        full = [n for n in self._buckets if self._tokens(n, now) >= self.limit.burst]
        for n in full:
            del self._buckets[n]

"""The request rate per API key: a token bucket per key (per client address with no keys),
``SESSIONS_RATE_LIMIT=<rate>[/<burst>]``. Refused with 429 ``rate_limited`` + ``Retry-After``."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from service.errors import ConfigurationError, RateLimited

__all__ = ["RateLimit", "RateLimiter", "parse_rate_limit"]

# Buckets kept at most; beyond it the full ones (idle keys) are dropped, so the map cannot grow unbounded.
_MAX_BUCKETS = 10_000


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

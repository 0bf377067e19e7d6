"""Page cursors and page arithmetic shared by every read model (pure functions).

Cursors are opaque to clients: ``<kind>.<base64url JSON>``. The kind stops a cursor of one listing from being
used on another. Keyset cursors name the last row of a page, so pages stay stable while rows are added.

Messages need no search at all: a live session's messages are numbered 1..message_count without gaps (they
are only ever appended, and all removed together when the session is deleted), so every page, with any
mix of ``offset``, ``after``, ``before`` and ``limit``, is one contiguous ``seq`` range computed here. A
backend reads ``seq BETWEEN first AND last`` on the (tenant, session_id, seq) key: the latest 20 messages of
a session of a million cost what they cost in a session of a hundred.
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import msgspec

from .api import Order
from .errors import InvalidCursor

__all__ = [
    "MessageWindow",
    "audit_cursor",
    "decode_cursor",
    "encode_cursor",
    "from_us",
    "message_cursor",
    "message_window",
    "ms_bounds",
    "parse_audit_cursor",
    "parse_session_cursor",
    "session_cursor",
    "to_us",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def to_us(dt: datetime) -> int:
    """Whole microseconds since the epoch (exact). A naive datetime is taken as UTC."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return (dt - _EPOCH) // _US


def from_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def encode_cursor(kind: str, values: list[Any]) -> str:
    return f"{kind}.{base64.urlsafe_b64encode(msgspec.json.encode(values)).decode().rstrip('=')}"


def decode_cursor(kind: str, cursor: str, types: tuple[type, ...]) -> list[Any]:
    prefix, _, body = cursor.partition(".")
    if prefix != kind or not body:
        raise InvalidCursor(f"not a cursor of this listing: {cursor!r}")
    try:
        values = msgspec.json.decode(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (binascii.Error, ValueError, msgspec.DecodeError) as e:
        raise InvalidCursor(f"malformed cursor: {cursor!r}") from e
    if not isinstance(values, list) or len(values) != len(types):
        raise InvalidCursor(f"malformed cursor: {cursor!r}")
    for v, t in zip(values, types, strict=True):
        if not isinstance(v, t) or isinstance(v, bool):
            raise InvalidCursor(f"malformed cursor: {cursor!r}")
    return values


# -- messages ---------------------------------------------------------------------------------------------


def message_cursor(seq: int) -> str:
    return encode_cursor("m", [seq])


def _seq(cursor: str | None) -> int | None:
    return None if cursor is None else int(decode_cursor("m", cursor, (int,))[0])


class MessageWindow(NamedTuple):
    """Messages ``first..last`` (inclusive; empty when first > last), returned in ``order``."""

    first: int
    last: int
    descending: bool
    next_cursor: str | None

    @property
    def empty(self) -> bool:
        return self.first > self.last

    @property
    def size(self) -> int:
        return max(self.last - self.first + 1, 0)


def message_window(
    count: int,
    *,
    limit: int | None = None,
    offset: int | None = None,
    order: Order = "asc",
    after: str | None = None,
    before: str | None = None,
) -> MessageWindow:
    """The page of a session of ``count`` messages. ``after``: rows after the cursor in ``order``; ``before``:
    the rows nearest before the cursor (in ``order``), still returned in ``order``; ``offset`` skips that many
    from where the page starts (from the cursor, with ``before``); ``limit`` None or <= 0: no limit."""
    if order not in ("asc", "desc"):
        raise InvalidCursor(f"order must be 'asc' or 'desc', not {order!r}", code="invalid_order")
    a, b = _seq(after), _seq(before)
    skip = max(offset or 0, 0)
    n = limit if limit is not None and limit > 0 else None
    lo, hi = 1, count
    if order == "asc":
        if a is not None:
            lo = max(lo, a + 1)
        if b is not None:
            hi = min(hi, b - 1) - skip
            if n is not None:
                lo = max(lo, hi - n + 1)
        else:
            lo += skip
            if n is not None:
                hi = min(hi, lo + n - 1)
    else:
        if a is not None:
            hi = min(hi, a - 1)
        if b is not None:
            lo = max(lo, b + 1) + skip
            if n is not None:
                hi = min(hi, lo + n - 1)
        else:
            hi -= skip
            if n is not None:
                lo = max(lo, hi - n + 1)
    descending = order == "desc"
    next_cursor = None
    if lo <= hi:
        last = lo if descending else hi
        if (last > 1) if descending else (last < count):
            next_cursor = message_cursor(last)
    return MessageWindow(lo, hi, descending, next_cursor)


# -- sessions (a user's, most recently updated first) ------------------------------------------------------


def session_cursor(updated_at: datetime, session_id: str) -> str:
    return encode_cursor("s", [to_us(updated_at), session_id])


def parse_session_cursor(cursor: str) -> tuple[int, str]:
    us, sid = decode_cursor("s", cursor, (int, str))
    return int(us), str(sid)


# -- audit (oldest first: recorded_at, partition, position) ------------------------------------------------


def audit_cursor(key: tuple[int, int, int]) -> str:
    return encode_cursor("a", list(key))


def parse_audit_cursor(cursor: str) -> tuple[int, int, int]:
    ms, partition, seq = decode_cursor("a", cursor, (int, int, int))
    return int(ms), int(partition), int(seq)


def ms_bounds(since: datetime | None, until: datetime | None) -> tuple[int | None, int | None]:
    """``since <= recorded_at < until`` as bounds on whole milliseconds: ``lo <= ms < hi``."""

    def ceil_ms(dt: datetime) -> int:
        return -(-to_us(dt) // 1000)

    return (None if since is None else ceil_ms(since), None if until is None else ceil_ms(until))

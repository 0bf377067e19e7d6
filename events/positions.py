"""Positions in the log: stream entry ids (``"<ms>-<seq>"``), one per partition.

A write returns the position it reached in its partition; a read that must see it waits until the read
model's checkpoint of that partition is at or past it. The text form, used by the ``X-Session-Position``
header and the ``min_position`` parameter, is ``<partition>:<ms>-<seq>``, comma-separated.

Light on purpose (no driver, nothing of the server): the service, the projections and the SDK share this copy.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from .errors import BadRequest

__all__ = ["Positions", "format_positions", "merge_positions", "parse_positions", "position_key"]

Positions = dict[int, str]
"""partition -> stream entry id (``<ms>-<seq>``)."""

_TOKEN = re.compile(r"^(\d{1,5}):(\d{1,20})-(\d{1,20})$")


def position_key(position: str | None) -> tuple[int, int]:
    """Sort key of a stream entry id; None (nothing yet) sorts first."""
    if not position:
        return (0, 0)
    ms, _, seq = position.partition("-")
    return (int(ms), int(seq or 0))


def parse_positions(text: str | None) -> Positions:
    """``"3:1700000000000-0,5:1700000000001-2"`` -> ``{3: "1700000000000-0", 5: "1700000000001-2"}``."""
    out: Positions = {}
    if not text:
        return out
    for token in text.split(","):
        token = token.strip()
        if not token:
            continue
        m = _TOKEN.match(token)
        if m is None:
            raise BadRequest(
                f"position {token!r} is not <partition>:<ms>-<seq> (as writes return it)",
                code="invalid_position",
            )
        merge_positions(out, {int(m.group(1)): f"{m.group(2)}-{m.group(3)}"})
    return out


def format_positions(positions: Mapping[int, str]) -> str:
    return ",".join(f"{p}:{pos}" for p, pos in sorted(positions.items()))


def merge_positions(into: Positions, other: Mapping[int, str | None]) -> Positions:
    """Keep, per partition, the later of the two positions."""
    for p, pos in other.items():
        if pos and position_key(pos) > position_key(into.get(p)):
            into[p] = pos
    return into

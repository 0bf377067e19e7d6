"""A write's HTTP reply: its body, and its positions in the ``X-Session-Position`` header."""

from __future__ import annotations

from typing import Any

from litestar import Response

from service.consistency import format_positions, merge_positions
from service.http.shapes import POSITION_HEADER, Position

__all__ = ["written"]


def written(body: Any, positions: list[Position], status: int = 200, **headers: str) -> Response[Any]:
    if positions:
        headers[POSITION_HEADER] = format_positions(
            merge_positions({}, {p.partition: p.id for p in positions})
        )
    return Response(body, status_code=status, headers=headers)

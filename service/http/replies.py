"""Replies built from the server's own types: a write's positions (body and ``X-Session-Position`` header)
and a session's JSON shape. The shapes themselves are in ``service.http.shapes`` (shared with the SDK)."""

from __future__ import annotations

from typing import Any

from litestar import Response

from events.log import AppendResult
from events.positions import format_positions, merge_positions
from projections.api import SessionRecord
from service.http.shapes import POSITION_HEADER, Position, SessionReply

__all__ = ["positions_of", "session_reply", "written"]


def positions_of(*results: AppendResult) -> list[Position]:
    return [Position(r.partition, r.position) for r in results if r.position]


def session_reply(record: SessionRecord, created: bool | None = None) -> SessionReply:
    return SessionReply(
        session_id=record.session_id,
        user_id=record.user_id,
        created_at=record.created_at,
        updated_at=record.updated_at,
        metadata=record.metadata,
        message_count=record.message_count,
        version=record.version,
        created=created,
    )


def written(body: Any, positions: list[Position], status: int = 200, **headers: str) -> Response[Any]:
    if positions:
        headers[POSITION_HEADER] = format_positions(
            merge_positions({}, {p.partition: p.id for p in positions})
        )
    return Response(body, status_code=status, headers=headers)

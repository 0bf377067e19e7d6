"""The JSON shapes of the HTTP API (requests and replies), shared by the server and the SDK
(``sessions_sdk``).

Times are RFC 3339 strings; positions are ``{"partition": p, "id": "<ms>-<seq>"}`` in bodies and
``<p>:<ms>-<seq>`` (comma-separated) in the ``X-Session-Position`` header.

Light on purpose: only msgspec and the light contract modules (``events.schema``, ``projections.api``), so the
SDK can use these Structs without loading the server. Builders from the server's own types (``positions_of``,
``session_reply``) are in ``service.http.replies``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from msgspec import Meta, Struct, field

from events.schema import Message
from projections.api import AuditRecord, MessageRecord

__all__ = [
    "POSITION_HEADER",
    "AddMessages",
    "AppendReply",
    "AuditReply",
    "ClearReply",
    "CreateSession",
    "MemoriesReply",
    "MemoryDeleteReply",
    "MemoryPut",
    "MemorySaveReply",
    "MessagesReply",
    "Position",
    "Problem",
    "PublishReply",
    "PublishRequest",
    "PublishedAggregate",
    "SessionDeleteReply",
    "SessionReply",
    "SessionsReply",
]

POSITION_HEADER = "X-Session-Position"

Id = Annotated[str, Meta(min_length=1, max_length=256)]
# A session id is a path segment of the API: no '/'.
SessionId = Annotated[
    str, Meta(min_length=1, max_length=256, pattern=r"^[^/]+$", description="1 to 256 characters, no '/'")
]


class Position(Struct, frozen=True):
    partition: int
    id: str


# -- requests ---------------------------------------------------------------------------------------------


class CreateSession(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    user_id: SessionId  # a path segment too
    session_id: SessionId | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


class AddMessages(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    messages: Annotated[list[Message], Meta(min_length=1)]
    expected_version: Annotated[int, Meta(ge=0)] | None = None


class MemoryPut(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    value: Any
    session_id: Id | None = None


class PublishRequest(Struct, frozen=True, kw_only=True):
    """Raw events (the ``events`` JSON Schema); ``version`` and ``recorded_at`` are assigned by the log."""

    events: Annotated[list[dict[str, Any]], Meta(min_length=1, max_length=1000)]


# -- replies ----------------------------------------------------------------------------------------------


class SessionReply(Struct, frozen=True, kw_only=True, omit_defaults=True):
    session_id: str
    user_id: str
    created_at: datetime
    updated_at: datetime
    metadata: dict[str, Any]
    message_count: int
    version: int
    created: bool | None = None  # only on get-or-create: whether this call created it


class SessionsReply(Struct, frozen=True, kw_only=True, omit_defaults=True):
    sessions: list[SessionReply]
    next_cursor: str | None = None


class AppendReply(Struct, frozen=True, kw_only=True):
    session_id: str
    version: int
    message_count: int | None
    position: Position | None
    appended: bool
    duplicate: bool
    event_ids: list[str]


class MessagesReply(Struct, frozen=True, kw_only=True, omit_defaults=True):
    messages: list[MessageRecord]
    total: int
    next_cursor: str | None = None


class SessionDeleteReply(Struct, frozen=True, kw_only=True):
    session_id: str
    deleted: bool
    position: Position | None


class MemoriesReply(Struct, frozen=True, kw_only=True):
    memories: dict[str, Any]


class MemorySaveReply(Struct, frozen=True, kw_only=True):
    user_id: str
    key: str
    session_id: str | None
    version: int
    position: Position | None


class MemoryDeleteReply(Struct, frozen=True, kw_only=True):
    deleted: bool
    position: Position | None


class ClearReply(Struct, frozen=True, kw_only=True):
    count: int
    positions: list[Position]


class PublishedAggregate(Struct, frozen=True, kw_only=True):
    aggregate_kind: str
    aggregate_id: str
    version: int
    position: Position | None
    appended: bool
    duplicate: bool
    event_ids: list[str]


class PublishReply(Struct, frozen=True, kw_only=True):
    results: list[PublishedAggregate]


class AuditReply(Struct, frozen=True, kw_only=True, omit_defaults=True):
    events: list[AuditRecord]
    next_cursor: str | None = None


class Problem(Struct, frozen=True, kw_only=True, omit_defaults=True):
    """RFC 9457 problem details, plus the stable ``code`` and any details of the error."""

    type: str
    title: str
    status: int
    code: str
    detail: str
    extra: dict[str, Any] = field(default_factory=dict)

    def to_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {**self.extra}
        body.update(type=self.type, title=self.title, status=self.status, code=self.code, detail=self.detail)
        return body

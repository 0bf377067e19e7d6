"""Event types: one tagged union of frozen msgspec Structs.

An event is an envelope (who, when, which aggregate, which version) around a typed payload. The ``type`` tag
names the event and its version (``session.created.v1``); a tag is never reused. Evolution adds fields with
defaults only; a changed meaning is a new ``vN`` type, converted once by an upcaster in ``events.codec``, so
handlers only ever see the latest version.

Two aggregate kinds:

* ``session`` (id: the session id): created, messages added, deleted, and the memory scoped to that session
  (saved, deleted, cleared), so that every rule about a session holds atomically in one partition.
* ``memory`` (id: the user id): the memory scoped to the user (saved, deleted, cleared), and
  ``user.forgotten``: the user was erased (crypto-shredding; ``service.erasure``).

``version`` and ``recorded_at`` are assigned by the log (the append script and the stream entry id); a
publisher leaves them out.
"""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, TypeAlias

from msgspec import Meta, Struct, field

__all__ = [
    "AGGREGATE_KINDS",
    "EVENT_TYPES",
    "FORGET_REASON",
    "ROLES",
    "Actor",
    "AggregateKind",
    "AnyEvent",
    "Event",
    "FunctionCall",
    "MemoryCleared",
    "MemoryClearedPayload",
    "MemoryDeleted",
    "MemoryDeletedPayload",
    "MemorySaved",
    "MemorySavedPayload",
    "Message",
    "MessagesAdded",
    "MessagesAddedPayload",
    "SessionCreated",
    "SessionCreatedPayload",
    "SessionDeleted",
    "SessionDeletedPayload",
    "ToolCall",
    "UserForgotten",
    "UserForgottenPayload",
    "epoch_ms",
    "has_nul",
    "new_event_id",
    "now_ms",
    "utcnow",
]

Id = Annotated[str, Meta(min_length=1, max_length=256, description="An identifier: 1 to 256 characters.")]
AwareDatetime = Annotated[datetime, Meta(tz=True, description="RFC 3339 timestamp with a time zone.")]
Role = Literal["user", "assistant", "system", "tool"]
AggregateKind = Literal["session", "memory"]
ActorKind = Literal["user", "model", "service", "admin"]
ROLES: tuple[str, ...] = ("user", "assistant", "system", "tool")
AGGREGATE_KINDS: tuple[str, ...] = ("session", "memory")


def utcnow() -> datetime:
    return datetime.now(UTC)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def epoch_ms(dt: datetime) -> int:
    """Whole milliseconds since the epoch (exact, no float rounding). A naive datetime is taken as UTC."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return (dt - _EPOCH) // _MS


def has_nul(value: Any) -> bool:
    """True when a string anywhere in ``value`` (keys included) holds NUL, which the log refuses: PostgreSQL
    text cannot hold it (``nul_character``)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(has_nul(k) or has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(has_nul(v) for v in value)
    return False


def new_event_id() -> uuid.UUID:
    """A UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then random bits; sorts by creation time."""
    value = (now_ms() & ((1 << 48) - 1)) << 80 | int.from_bytes(os.urandom(10), "big") & ((1 << 80) - 1)
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
    return uuid.UUID(int=value)


class Actor(Struct, frozen=True, kw_only=True):
    """Who caused the event."""

    kind: ActorKind = "service"
    id: str = "sessions"


# ---------------------------------------------------------------------------------------------------------
# Payload parts


class FunctionCall(Struct, frozen=True, kw_only=True, omit_defaults=True):
    name: str
    arguments: str = ""


class ToolCall(Struct, frozen=True, kw_only=True):
    """An OpenAI-style tool call made by an assistant message."""

    id: Id
    function: FunctionCall
    type: Literal["function"] = "function"


class Message(Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One conversation message. ``content`` is ciphertext (base64) when the envelope names a key."""

    role: Role
    content: str | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    timestamp: int = 0
    metadata: dict[str, Any] | None = None


# ---------------------------------------------------------------------------------------------------------
# Payloads


class SessionCreatedPayload(Struct, frozen=True, kw_only=True):
    user_id: Id
    metadata: dict[str, Any] = field(default_factory=dict)


class MessagesAddedPayload(Struct, frozen=True, kw_only=True):
    messages: list[Message]


FORGET_REASON = "user_forgotten"
"""The ``session.deleted`` reason of a session deleted to forget its user: the read models drop its row."""


class SessionDeletedPayload(Struct, frozen=True, kw_only=True, omit_defaults=True):
    reason: str | None = None


class MemorySavedPayload(Struct, frozen=True, kw_only=True, omit_defaults=True):
    """``value`` is any JSON value (a string of ciphertext when the envelope names an encryption key)."""

    user_id: Id
    key: Annotated[str, Meta(min_length=1)]
    value: Any
    session_id: Id | None = None


class MemoryDeletedPayload(Struct, frozen=True, kw_only=True, omit_defaults=True):
    user_id: Id
    key: Annotated[str, Meta(min_length=1)]
    session_id: Id | None = None


class MemoryClearedPayload(Struct, frozen=True, kw_only=True, omit_defaults=True):
    user_id: Id
    session_id: Id | None = None


class UserForgottenPayload(Struct, frozen=True, kw_only=True):
    """Only who was forgotten: the audit trail says it happened and nothing of what was erased."""

    user_id: Id


# ---------------------------------------------------------------------------------------------------------
# Envelope and events


class Event(Struct, frozen=True, kw_only=True, tag_field="type", omit_defaults=True):
    """The envelope shared by every event; subclasses add a typed ``payload``."""

    id: uuid.UUID = field(default_factory=new_event_id)
    aggregate_kind: AggregateKind
    aggregate_id: Id
    version: int | None = None
    tenant: Id = "default"
    actor: Actor = field(default_factory=Actor)
    correlation_id: str | None = None
    causation_id: str | None = None
    occurred_at: AwareDatetime = field(default_factory=utcnow)
    recorded_at: AwareDatetime | None = None
    # Room for per-user encryption (crypto-shredding): the id of the key that encrypted message contents and
    # memory values of this event. None means plain text.
    encryption_key_id: str | None = None


class SessionCreated(Event, frozen=True, kw_only=True, tag="session.created.v1"):
    payload: SessionCreatedPayload


class MessagesAdded(Event, frozen=True, kw_only=True, tag="session.messages_added.v1"):
    payload: MessagesAddedPayload


class SessionDeleted(Event, frozen=True, kw_only=True, tag="session.deleted.v1"):
    payload: SessionDeletedPayload = field(default_factory=SessionDeletedPayload)


class MemorySaved(Event, frozen=True, kw_only=True, tag="memory.saved.v1"):
    payload: MemorySavedPayload


class MemoryDeleted(Event, frozen=True, kw_only=True, tag="memory.deleted.v1"):
    payload: MemoryDeletedPayload


class MemoryCleared(Event, frozen=True, kw_only=True, tag="memory.cleared.v1"):
    payload: MemoryClearedPayload


class UserForgotten(Event, frozen=True, kw_only=True, tag="user.forgotten.v1"):
    """The user was erased: their data key is destroyed, every read-model row of theirs removed. Appended to
    the user's memory aggregate, after their sessions were deleted."""

    payload: UserForgottenPayload


AnyEvent: TypeAlias = (
    SessionCreated
    | MessagesAdded
    | SessionDeleted
    | MemorySaved
    | MemoryDeleted
    | MemoryCleared
    | UserForgotten
)

EVENT_TYPES: dict[str, type[Event]] = {
    str(cls.__struct_config__.tag): cls
    for cls in (
        SessionCreated,
        MessagesAdded,
        SessionDeleted,
        MemorySaved,
        MemoryDeleted,
        MemoryCleared,
        UserForgotten,
    )
}

"""The event log: event types, their JSON codec, and the partitioned, atomic log on Redis Streams.

* ``events.schema``: the event types (one tagged union of msgspec Structs); ``events.codec``: their JSON;
* ``events.errors``: what the log raises; ``events.positions``: stream positions (parse, format, merge);
* ``events.keys``: every Redis key; ``events.settings``: ``LogSettings`` and ``Limits``;
* ``events.log``: ``EventLog``, the log on Redis (the atomic append script is ``append.lua``).

The names below load on first use (PEP 562): importing a light module (``events.schema``, ``events.errors``,
``events.positions``) does not load Redis, so the SDK can use them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import lazy

if TYPE_CHECKING:
    from .codec import RawEntry, decode_entry, decode_event, encode_event, recorded_at_of
    from .errors import (
        ConfigurationError,
        Conflict,
        DuplicateEventId,
        InvalidEvent,
        LimitExceeded,
        NotFound,
        PermissionDenied,
        SessionDeleted,
        SessionsError,
        Unavailable,
        UndecodableEvent,
    )
    from .keys import Keys, partition_of
    from .log import AggregateState, AppendResult, EventLog, Publisher
    from .schema import (
        Actor,
        AnyEvent,
        Event,
        FunctionCall,
        MemoryCleared,
        MemoryClearedPayload,
        MemoryDeleted,
        MemoryDeletedPayload,
        MemorySaved,
        MemorySavedPayload,
        Message,
        MessagesAdded,
        MessagesAddedPayload,
        SessionCreated,
        SessionCreatedPayload,
        SessionDeletedPayload,
        ToolCall,
        UserForgotten,
        UserForgottenPayload,
        new_event_id,
    )
    from .schema import SessionDeleted as SessionDeletedEvent
    from .settings import Limits, LogSettings

__all__ = [
    "Actor",
    "AggregateState",
    "AnyEvent",
    "AppendResult",
    "ConfigurationError",
    "Conflict",
    "DuplicateEventId",
    "Event",
    "EventLog",
    "FunctionCall",
    "InvalidEvent",
    "Keys",
    "LimitExceeded",
    "Limits",
    "LogSettings",
    "MemoryCleared",
    "MemoryClearedPayload",
    "MemoryDeleted",
    "MemoryDeletedPayload",
    "MemorySaved",
    "MemorySavedPayload",
    "Message",
    "MessagesAdded",
    "MessagesAddedPayload",
    "NotFound",
    "PermissionDenied",
    "Publisher",
    "RawEntry",
    "SessionCreated",
    "SessionCreatedPayload",
    "SessionDeleted",
    "SessionDeletedEvent",
    "SessionDeletedPayload",
    "SessionsError",
    "ToolCall",
    "Unavailable",
    "UndecodableEvent",
    "UserForgotten",
    "UserForgottenPayload",
    "decode_entry",
    "decode_event",
    "encode_event",
    "new_event_id",
    "partition_of",
    "recorded_at_of",
]

# Where each public name is defined: "module" or "module:attribute" (for a name exported under another one).
_HOME: dict[str, str] = {
    **dict.fromkeys(["RawEntry", "decode_entry", "decode_event", "encode_event", "recorded_at_of"], "codec"),
    **dict.fromkeys(
        [
            "ConfigurationError",
            "Conflict",
            "DuplicateEventId",
            "InvalidEvent",
            "LimitExceeded",
            "NotFound",
            "PermissionDenied",
            "SessionDeleted",
            "SessionsError",
            "Unavailable",
            "UndecodableEvent",
        ],
        "errors",
    ),
    **dict.fromkeys(["Keys", "partition_of"], "keys"),
    **dict.fromkeys(["AggregateState", "AppendResult", "EventLog", "Publisher"], "log"),
    **dict.fromkeys(
        [
            "Actor",
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
            "SessionDeletedPayload",
            "ToolCall",
            "UserForgotten",
            "UserForgottenPayload",
            "new_event_id",
        ],
        "schema",
    ),
    "SessionDeletedEvent": "schema:SessionDeleted",
    **dict.fromkeys(["Limits", "LogSettings"], "settings"),
}


def __getattr__(name: str) -> Any:
    return lazy.load(__name__, _HOME, name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})

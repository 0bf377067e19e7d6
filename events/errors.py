"""Errors of the event log.

Every refusal carries a stable ``code`` (snake_case, part of the public contract: HTTP and gRPC map it to a
status) and a message a person understands. redis-py's errors are converted once, by ``events.driver``
(``raise ... from e``), which every caller of the log's Redis goes through.

    SessionsError                      base of every error this project raises on purpose
    ├── InvalidEvent                   the input breaks a rule: bad shape, size limit, unknown tool call, ...
    │   ├── LimitExceeded              a configured size or count limit
    │   └── UndecodableEvent           a stored entry that cannot be read as a known event (dead-lettered)
    ├── BadRequest                     the request's own arguments are malformed (a position, a cursor)
    ├── NotFound                       the session (or memory key) does not exist
    │   └── SessionDeleted             the session existed and was deleted
    ├── PermissionDenied               the session belongs to another user
    ├── Conflict                       the expected aggregate version did not match (carries the current one)
    ├── DuplicateEventId               an event id twice in one append (``duplicate_event_id``), or already
    │                                  used by an append to another aggregate, or known ids mixed with new
    │                                  ones (``event_id_reused``)
    ├── Unavailable                    Redis (or the read model) cannot be reached, or did not answer within
    │                                  its bound (``LogSettings.timeout_s``); retryable
    └── ConfigurationError             the deployment's settings disagree with the log (e.g. partition count)
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BadRequest",
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
    "error_from_code",
]


class SessionsError(Exception):
    """Base class. ``code`` is stable; ``details`` holds machine-readable extras (e.g. current_version)."""

    code: str = "error"

    def __init__(self, message: str, *, code: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, **self.details}


class InvalidEvent(SessionsError):
    code = "invalid_event"


class LimitExceeded(InvalidEvent):
    code = "limit_exceeded"


class UndecodableEvent(InvalidEvent):
    code = "undecodable_event"


class BadRequest(SessionsError):
    code = "invalid_request"


class NotFound(SessionsError):
    code = "not_found"


class SessionDeleted(NotFound):
    code = "session_deleted"


class PermissionDenied(SessionsError):
    code = "permission_denied"


class Conflict(SessionsError):
    code = "version_conflict"


class DuplicateEventId(SessionsError):
    code = "duplicate_event_id"


class Unavailable(SessionsError):
    code = "unavailable"


class ConfigurationError(SessionsError):
    code = "configuration_error"


# Codes raised by the append script (events/append.lua), mapped to the class that carries them.
_CLASS_BY_CODE: dict[str, type[SessionsError]] = {
    "version_conflict": Conflict,
    "duplicate_event_id": DuplicateEventId,
    "event_id_reused": DuplicateEventId,
    "session_not_found": NotFound,
    "memory_session_not_found": NotFound,
    "session_deleted": SessionDeleted,
    "session_owned_by_another_user": PermissionDenied,
    "memory_session_not_owned": PermissionDenied,
    "limit_exceeded": LimitExceeded,
    "content_too_large": LimitExceeded,
    "too_many_messages": LimitExceeded,
    "key_too_long": LimitExceeded,
    "value_too_large": LimitExceeded,
    "metadata_too_large": LimitExceeded,
    "too_many_memory_keys": LimitExceeded,
    "too_many_tool_calls": LimitExceeded,
    "id_too_long": LimitExceeded,
    "partition_mismatch": ConfigurationError,
    "log_not_configured": ConfigurationError,
    "log_state_lost": Unavailable,
}


def error_from_code(code: str, message: str, **details: Any) -> SessionsError:
    """Build the typed error for a code; unknown codes are input errors (the script only refuses input)."""
    cls = _CLASS_BY_CODE.get(code, InvalidEvent)
    return cls(message, code=code, **details)

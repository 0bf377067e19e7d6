"""Errors of the service layer, on top of the event log's (``events.errors``).

Every error the API shows has a stable snake_case ``code``; the HTTP adapter maps the class to a status and
the SDK raises the same classes again from a problem+json reply, so a caller handles one hierarchy everywhere.

    events.errors.SessionsError
    ├── InvalidEvent                  422 (the log's rules)
    │   ├── LimitExceeded             413
    │   └── UndecodableEvent          422
    ├── BadRequest                    400 the request itself: bad JSON or field, cursor, position (events)
    ├── NotFound                      404
    │   └── SessionDeleted            410
    ├── PermissionDenied              403 (insufficient_role, tenant_mismatch: service.security)
    ├── Unauthenticated               401 missing, unknown or revoked API key (service.security)
    ├── RateLimited                   429 with Retry-After (service.validation)
    ├── Conflict                      409 (carries current_version)
    ├── DuplicateEventId              409
    ├── Unavailable                   503 with Retry-After
    │   └── NotCaughtUp               503 the read model did not reach the position in time (retry)
    └── ConfigurationError            500
"""

from __future__ import annotations

from events.errors import (
    BadRequest,
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

__all__ = [
    "BadRequest",
    "ConfigurationError",
    "Conflict",
    "DuplicateEventId",
    "InvalidEvent",
    "LimitExceeded",
    "NotCaughtUp",
    "NotFound",
    "PermissionDenied",
    "RateLimited",
    "SessionDeleted",
    "SessionsError",
    "Unauthenticated",
    "Unavailable",
    "UndecodableEvent",
    "error_class_for_code",
    "status_of",
]


class Unauthenticated(SessionsError):
    """No API key, or one the server does not know (``invalid_api_key``) or revoked (``revoked_api_key``)."""

    code = "missing_api_key"


class RateLimited(SessionsError):
    """The key's request rate is used up: retry after ``retry_after`` seconds."""

    code = "rate_limited"


class NotCaughtUp(Unavailable):
    """The read waited its bound and the projection is still behind: retry after ``retry_after`` seconds."""

    code = "read_model_behind"


# Most specific first: the first class an error is an instance of gives its status.
_STATUS: tuple[tuple[type[SessionsError], int], ...] = (
    (BadRequest, 400),
    (LimitExceeded, 413),
    (InvalidEvent, 422),
    (SessionDeleted, 410),
    (NotFound, 404),
    (PermissionDenied, 403),
    (Conflict, 409),
    (DuplicateEventId, 409),
    (Unavailable, 503),
    (ConfigurationError, 500),
    (Unauthenticated, 401),
    (RateLimited, 429),
)


# Codes whose class says "invalid input" but which are about the request, not the events: 400.
_BAD_REQUEST_CODES = frozenset({"invalid_cursor", "invalid_order", "invalid_position"})


def status_of(error: SessionsError) -> int:
    if error.code in _BAD_REQUEST_CODES:
        return 400
    for cls, status in _STATUS:
        if isinstance(error, cls):
            return status
    return 500


_CLASS_BY_STATUS: dict[int, type[SessionsError]] = {
    400: BadRequest,
    401: Unauthenticated,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    410: SessionDeleted,
    413: LimitExceeded,
    422: InvalidEvent,
    429: RateLimited,
    503: Unavailable,
}


def error_class_for_code(status: int, code: str) -> type[SessionsError]:
    """The class a client raises for a problem reply: by code where it is special, else by status."""
    special: dict[str, type[SessionsError]] = {
        "read_model_behind": NotCaughtUp,
        "duplicate_event_id": DuplicateEventId,
        "undecodable_event": UndecodableEvent,
        "configuration_error": ConfigurationError,
    }
    if code in special:
        return special[code]
    return _CLASS_BY_STATUS.get(status, SessionsError)

"""Errors of the service layer, on top of the event log's (``events.errors``).

Every error the API shows has a stable snake_case ``code``; ``statuses_of`` gives its HTTP status and gRPC
status code (one table, read by both adapters), and the SDK raises the same classes again from a problem+json
reply, so a caller handles one hierarchy everywhere.

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
    │   └── IdempotencyKeyReused      409 the same Idempotency-Key with another request
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
    "IdempotencyKeyReused",
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
    "grpc_code_of",
    "status_of",
    "statuses_of",
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


class IdempotencyKeyReused(Conflict):
    """A retry with the same ``Idempotency-Key`` but another request: the key names the first request only."""

    code = "idempotency_key_reused"


# One table for both adapters: the HTTP status and the gRPC status code (by name: the core imports no
# transport; ``service.grpc`` looks the name up in ``grpc.StatusCode``). Most specific first: the first class
# an error is an instance of gives its statuses.
_STATUS: tuple[tuple[type[SessionsError], int, str], ...] = (
    (BadRequest, 400, "INVALID_ARGUMENT"),
    (LimitExceeded, 413, "INVALID_ARGUMENT"),  # the input is too big
    (InvalidEvent, 422, "INVALID_ARGUMENT"),
    (SessionDeleted, 410, "NOT_FOUND"),
    (NotFound, 404, "NOT_FOUND"),
    (PermissionDenied, 403, "PERMISSION_DENIED"),
    (Conflict, 409, "ABORTED"),
    (DuplicateEventId, 409, "ALREADY_EXISTS"),
    (Unavailable, 503, "UNAVAILABLE"),  # NotCaughtUp too: retry shortly
    (ConfigurationError, 500, "FAILED_PRECONDITION"),
    (Unauthenticated, 401, "UNAUTHENTICATED"),
    (RateLimited, 429, "RESOURCE_EXHAUSTED"),
)
_UNLISTED = (500, "INTERNAL")

# Codes whose class says "invalid input" but which are about the request, not the events: 400.
_BAD_REQUEST_CODES = frozenset({"invalid_cursor", "invalid_order", "invalid_position"})


def statuses_of(error: SessionsError) -> tuple[int, str]:
    """(HTTP status, gRPC status code name) of an error."""
    if error.code in _BAD_REQUEST_CODES:
        return 400, "INVALID_ARGUMENT"
    for cls, http, grpc in _STATUS:
        if isinstance(error, cls):
            return http, grpc
    return _UNLISTED


def status_of(error: SessionsError) -> int:
    """The HTTP status of an error."""
    return statuses_of(error)[0]


def grpc_code_of(error: SessionsError) -> str:
    """The name of the gRPC status code of an error (``grpc.StatusCode[name]``)."""
    return statuses_of(error)[1]


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
        "event_id_reused": DuplicateEventId,
        "undecodable_event": UndecodableEvent,
        "configuration_error": ConfigurationError,
        "idempotency_key_reused": IdempotencyKeyReused,
    }
    if code in special:
        return special[code]
    return _CLASS_BY_STATUS.get(status, SessionsError)

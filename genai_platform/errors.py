"""Errors of the ``genai_platform`` SDK: the service's own hierarchy, and ``grpc.RpcError`` as well, so code
written for the original SDK (which let ``grpc.RpcError`` through) still catches them.

    grpc.RpcError + events.errors.SessionsError
    └── PlatformError                  any refusal; ``code`` (stable snake_case), ``status`` (grpc.StatusCode)
        ├── InvalidArgumentError       INVALID_ARGUMENT (also a service.errors.BadRequest)
        ├── NotFoundError              NOT_FOUND: unknown or deleted session (also events.errors.NotFound)
        ├── PermissionDeniedError      PERMISSION_DENIED: another user's session
        ├── ConflictError              ABORTED: the expected version did not match
        ├── AlreadyExistsError         ALREADY_EXISTS: an event id used by another append
        ├── UnavailableError           UNAVAILABLE: unreachable, or a read timed out waiting; retry
        └── InternalError              anything else (INTERNAL, UNKNOWN, ...)
"""

from __future__ import annotations

from typing import Any

import grpc
import msgspec

from events.errors import Conflict, DuplicateEventId, NotFound, PermissionDenied, SessionsError, Unavailable
from service.errors import BadRequest

__all__ = [
    "AlreadyExistsError",
    "ConflictError",
    "InternalError",
    "InvalidArgumentError",
    "NotFoundError",
    "PermissionDeniedError",
    "PlatformError",
    "UnavailableError",
    "from_rpc_error",
]


class PlatformError(SessionsError, grpc.RpcError):  # type: ignore[misc]
    """A call the service refused or could not answer."""

    status: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(
        self, message: str, *, code: str | None = None, status: grpc.StatusCode | None = None, **details: Any
    ) -> None:
        super().__init__(message, code=code, **details)
        if status is not None:
            self.status = status

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class InvalidArgumentError(PlatformError, BadRequest):
    status = grpc.StatusCode.INVALID_ARGUMENT


class NotFoundError(PlatformError, NotFound):
    status = grpc.StatusCode.NOT_FOUND


class PermissionDeniedError(PlatformError, PermissionDenied):
    status = grpc.StatusCode.PERMISSION_DENIED


class ConflictError(PlatformError, Conflict):
    status = grpc.StatusCode.ABORTED


class AlreadyExistsError(PlatformError, DuplicateEventId):
    status = grpc.StatusCode.ALREADY_EXISTS


class UnavailableError(PlatformError, Unavailable):
    status = grpc.StatusCode.UNAVAILABLE


class InternalError(PlatformError):
    code = "internal_error"


_BY_STATUS: dict[grpc.StatusCode, type[PlatformError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.ABORTED: ConflictError,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExistsError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: UnavailableError,
}
_DEFAULT_CODES = {
    grpc.StatusCode.UNAVAILABLE: "unavailable",
    grpc.StatusCode.DEADLINE_EXCEEDED: "deadline_exceeded",
}


def from_rpc_error(error: grpc.RpcError) -> PlatformError:
    """The typed error for a failed call: the class by status, the code from the ``error-code`` trailer
    (set by this service; a gateway or the network may leave it out), the text after ``<code>: ``."""
    status: grpc.StatusCode = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    text: str = (error.details() if hasattr(error, "details") else None) or str(error)
    trailers = dict(error.trailing_metadata() or ()) if hasattr(error, "trailing_metadata") else {}
    code = trailers.get("error-code") or _DEFAULT_CODES.get(status) or status.name.lower()
    details: dict[str, Any] = {}
    if raw := trailers.get("error-details"):
        try:
            decoded = msgspec.json.decode(raw)
            details = decoded if isinstance(decoded, dict) else {}
        except msgspec.DecodeError:
            details = {}
    prefix = f"{code}: "
    message = text[len(prefix) :] if text.startswith(prefix) else text
    details.pop("status", None)
    return _BY_STATUS.get(status, InternalError)(message, code=code, status=status, **details)

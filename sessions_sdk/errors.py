"""The errors the SDK raises: the service's own classes (``events.errors``, ``service.errors``), with the
API's stable ``code`` and details: a caller handles one hierarchy whether it embeds the service or calls it.

    SessionsError
    ├── InvalidEvent                  422
    │   ├── LimitExceeded             413
    │   └── UndecodableEvent          422
    ├── BadRequest                    400
    ├── NotFound                      404
    │   └── SessionDeleted            410
    ├── PermissionDenied              403
    ├── Unauthenticated               401
    ├── RateLimited                   429 (``retry_after``)
    ├── Conflict                      409 (``current_version``)
    ├── DuplicateEventId              409
    ├── Unavailable                   503, and ``connection_failed`` when the service cannot be reached
    │   └── NotCaughtUp               503 the read model did not reach the client's writes in time (retry)
    └── ConfigurationError            500

A reply that is not problem+json raises ``SessionsError`` (``Unavailable`` for 5xx), ``code="http_error"``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import msgspec

from service.errors import (
    BadRequest,
    ConfigurationError,
    Conflict,
    DuplicateEventId,
    InvalidEvent,
    LimitExceeded,
    NotCaughtUp,
    NotFound,
    PermissionDenied,
    RateLimited,
    SessionDeleted,
    SessionsError,
    Unauthenticated,
    Unavailable,
    UndecodableEvent,
    error_class_for_code,
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
    "raise_for_problem",
    "transport_errors",
]

_PROBLEM_KEYS = {"type", "title", "status", "code", "detail"}


def raise_for_problem(response: httpx.Response) -> None:
    """Raise the service's exception for an error reply (problem+json), or a generic one for anything else."""
    if response.status_code < 400:
        return
    status = response.status_code
    try:
        body = msgspec.json.decode(response.content)
    except msgspec.DecodeError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("code"), str):
        code = body["code"]
        extras = {k: v for k, v in body.items() if k not in _PROBLEM_KEYS}
        cls = error_class_for_code(status, code)
        raise cls(str(body.get("detail") or code), code=code, status=status, **extras)
    if status >= 500:
        raise Unavailable(f"the service answered {status}", code="http_error", status=status)
    raise SessionsError(f"the service answered {status}", code="http_error", status=status)


@contextmanager
def transport_errors() -> Iterator[None]:
    """The one place httpx's transport failures become the project's ``Unavailable`` (both clients use it)."""
    try:
        yield
    except httpx.TransportError as e:
        raise Unavailable(f"cannot reach the sessions service: {e}", code="connection_failed") from e

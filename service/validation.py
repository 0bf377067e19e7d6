"""Limits the edge enforces before anything reaches the log: request rate per key, page size, id formats.

The log's script checks the rest atomically (messages per append, content, memory value and metadata sizes,
``events.settings``); the body size is Litestar's ``request_max_body_size`` (``SESSIONS_MAX_BODY_BYTES``).

==================  ======================================================================================
request rate        token bucket per API key (per client address when no keys are configured):
                    ``SESSIONS_RATE_LIMIT=<rate>[/<burst>]`` requests a second; unset or ``0``: no limit.
                    Refused with 429 ``rate_limited`` + ``Retry-After`` (gRPC RESOURCE_EXHAUSTED)
page size           ``limit`` above ``MAX_PAGE`` (1000): 400 ``limit_too_large`` (never silently clamped)
session / user id   1 to 256 characters, no control character, no ``/`` (a path segment); a user id is also
                    checked by the log. Refused with 400 ``invalid_id`` wherever it is: path, query, body
                    or gRPC field
memory key          1 to 256 characters, no control character: 400 ``invalid_key``
tenant              ``[a-z0-9][a-z0-9_-]{0,62}`` (keys name it; a tenant is never taken from a request when
                    keys are configured)
==================  ======================================================================================"""

from __future__ import annotations

import re

from service.errors import BadRequest

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "MAX_ID_LENGTH",
    "MAX_PAGE",
    "TENANT_PATTERN",
    "check_id",
    "check_key",
    "check_limit",
    "check_strict_int",
    "check_tenant",
    "invalid_id",
]

DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024  # 100 messages of the default 256 KiB content fit with room to spare


MAX_PAGE = 1000


MAX_ID_LENGTH = 256


TENANT_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def invalid_id(field: str) -> BadRequest:
    """The one refusal of a malformed session or user id, wherever it is (path, query, body, gRPC field)."""
    return BadRequest(
        f"{field} must be 1 to {MAX_ID_LENGTH} characters without '/' or control characters",
        code="invalid_id",
        field=field,
    )


def check_id(value: str, field: str) -> str:
    """A session or user id as the API takes it: 1 to 256 characters, no control character, no '/'."""
    if not value or len(value) > MAX_ID_LENGTH or _CONTROL.search(value) or "/" in value:
        raise invalid_id(field)
    return value


def check_strict_int(value: object, field: str) -> None:
    """A JSON number that must be an integer as sent: not a string of digits, not a boolean (the HTTP
    adapter's body conversion is lax and would take ``"3"`` for 3)."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise BadRequest(f"{field} must be an integer, not {type(value).__name__}", code="invalid_request")


def check_key(value: str) -> str:
    """A memory key: 1 to 256 characters, no control character ('/' allowed)."""
    if not value or len(value) > MAX_ID_LENGTH or _CONTROL.search(value):
        raise BadRequest(
            f"a memory key must be 1 to {MAX_ID_LENGTH} characters without control characters",
            code="invalid_key",
        )
    return value


def check_tenant(value: str) -> str:
    if not TENANT_PATTERN.match(value):
        raise BadRequest(
            "a tenant is 1 to 63 characters of a-z, 0-9, '_' and '-', starting with a letter or digit",
            code="invalid_tenant",
        )
    return value


def check_limit(value: int | None) -> int | None:
    if value is not None and value > MAX_PAGE:
        raise BadRequest(f"limit is at most {MAX_PAGE}", code="limit_too_large", limit=MAX_PAGE)
    return value

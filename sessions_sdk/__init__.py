"""Python SDK of the Sessions HTTP API: ``SessionsClient`` (blocking) and ``AsyncSessionsClient`` (asyncio),
both over httpx, with the same methods and typed results (the msgspec Structs of ``service.http.shapes``)::

    from sessions_sdk import SessionsClient
    with SessionsClient("http://127.0.0.1:8052") as client:
        s = client.create_session("alice")
        client.add_messages(s.session_id, [{"role": "user", "content": "hi"}])
        page = client.get_messages(s.session_id, limit=20, order="desc")

Read-your-writes is built in: the client remembers the latest position of every partition it wrote to (the
``X-Session-Position`` of each write) and sends them with every read, so a read made after a write through
the same client sees it, whichever server or aggregate it reads. Errors are raised as the service's own
exception classes (re-exported here from ``sessions_sdk.errors``), carrying the API's stable ``code``.

* ``calls``: each operation as a ``Call`` (method, path, query, body, decoder), no I/O;
* ``base``: what both clients share (headers, positions, reading a reply);
* ``client``: ``SessionsClient``; ``async_client``: ``AsyncSessionsClient``;
* ``errors``: problem+json and transport failures as the service's exceptions.

The SDK loads none of the server: no Redis, PostgreSQL, Litestar, cryptography or Prometheus client (a test
imports it in a fresh interpreter to keep it so). It shares with the server only light modules: the event
types (``events.schema``), the errors, the positions (``events.positions``), the records (``projections.api``)
and the JSON shapes (``service.http.shapes``). ``service.sdk`` is an alias of this package.
"""

from .async_client import AsyncSessionsClient
from .base import API_KEY_ENV, DEFAULT_URL
from .calls import Call
from .client import SessionsClient
from .errors import (
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
    raise_for_problem,
)

__all__ = [
    "API_KEY_ENV",
    "DEFAULT_URL",
    "AsyncSessionsClient",
    "BadRequest",
    "Call",
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
    "SessionsClient",
    "SessionsError",
    "Unauthenticated",
    "Unavailable",
    "UndecodableEvent",
    "raise_for_problem",
]

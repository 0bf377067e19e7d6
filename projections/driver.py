"""Where psycopg meets the project: the one translation of its failures, and the bound on waiting for it.

``projections.postgres`` and ``projections.migrations`` run every statement inside ``pg_errors()``, so
nothing above ``projections/`` catches a psycopg exception. What a failure becomes (``projections.errors``):

    psycopg OperationalError, InterfaceError (the server is down, the connection broke, no answer by the
    deadline), psycopg_pool PoolTimeout, PoolClosed, InternalError (a table dropped under a waiting
    statement: a rebuild's switch), QueryCanceled (statement_timeout), SerializationFailure,
    DeadlockDetected                           ``ReadModelUnavailable``: retry
    UniqueViolation of the archive's guard     ``AlreadyApplied`` (the rows and the checkpoint disagree)
    any other psycopg.Error                    ``ReadModelError``

The deadline. Cancelling a psycopg statement does not end it at once: the driver first asks the server to
cancel it and waits for the reply (up to 5 s, then up to 5 s more), and a frozen server (SIGSTOP) gives none.
So ``Deadline`` never cancels: when the time is up it shuts the connection's socket down, the statement fails
at once with ``OperationalError`` (the server is told nothing, and the pool discards the connection), and the
caller gets ``ReadModelUnavailable`` saying the read model did not answer in time. A server-side
``statement_timeout`` stands behind it for statements of a client that went away.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import errors as pgerr
from psycopg_pool import PoolClosed, PoolTimeout

from events.errors import SessionsError

from .errors import AlreadyApplied, ReadModelError, ReadModelUnavailable

__all__ = ["UNWRITABLE", "Deadline", "as_project_error", "pg_errors"]

# What the database or the driver raise for a batch that decoded and applied cleanly but cannot be stored (a
# value out of a column's range): poison, not an outage (``projections.postgres_batch``: ``UnwritableBatch``).
UNWRITABLE: tuple[type[BaseException], ...] = (psycopg.DataError, OverflowError, ValueError, TypeError)

_OUTAGES: tuple[type[BaseException], ...] = (
    psycopg.OperationalError,  # QueryCanceled (statement_timeout) is one
    psycopg.InterfaceError,
    PoolTimeout,
    PoolClosed,
    pgerr.InternalError,  # e.g. a table dropped under a waiting statement (a rebuild switch)
    pgerr.SerializationFailure,
    pgerr.DeadlockDetected,
)


def as_project_error(e: BaseException, *, late: float | None = None) -> SessionsError | None:
    """The project's error for a psycopg failure; None for what is not one (goes up as it is). ``late``: the
    bound the statement overran, when ``Deadline`` cut it."""
    if isinstance(e, SessionsError):
        return None
    if late is not None and isinstance(e, psycopg.Error):
        return ReadModelUnavailable(
            f"the read model's PostgreSQL did not answer within {late:g} s", code="read_model_unavailable"
        )
    if isinstance(e, _OUTAGES):
        return ReadModelUnavailable(f"the read model's PostgreSQL is unavailable: {e}")
    if isinstance(e, pgerr.UniqueViolation):
        from . import store  # here: store imports the migrations, which use this module

        if e.diag.constraint_name == store.GUARD_CONSTRAINT:
            return AlreadyApplied(f"the (aggregate, version) guard refused the batch: {e}")
        return ReadModelError(f"the batch broke a constraint: {e}")
    if isinstance(e, psycopg.Error):
        return ReadModelError(f"the read model's query failed: {e}")
    return None


@contextmanager
def pg_errors(deadline: Deadline | None = None) -> Iterator[None]:
    """Translate the psycopg failures of the statements inside (as httpx's ``map_httpcore_exceptions``)."""
    try:
        yield
    except Exception as e:
        mapped = as_project_error(e, late=deadline.overran if deadline is not None else None)
        if mapped is None:
            raise
        raise mapped from e


class Deadline:
    """``with Deadline(timeout_s) as d: ... d.watch(conn) ...``: if the statements on ``conn`` are still
    running after ``timeout_s``, the connection's socket is shut down so they fail at once (see the module
    docstring). ``overran`` is the bound once it fired, else None."""

    __slots__ = ("_conn", "_handle", "overran", "timeout_s")

    def __init__(self, timeout_s: float | None) -> None:
        self.timeout_s = timeout_s
        self.overran: float | None = None
        self._conn: Any = None
        self._handle: asyncio.TimerHandle | None = None

    def __enter__(self) -> Deadline:
        if self.timeout_s is not None:
            self._handle = asyncio.get_running_loop().call_later(self.timeout_s, self._fire)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._conn = None

    def watch(self, conn: Any) -> None:
        """Cut ``conn`` at the deadline (at once if it has passed); None: nothing to cut any more."""
        self._conn = conn
        if conn is not None and self.overran is not None:
            self._cut(conn)

    @property
    def remaining_s(self) -> float | None:
        if self._handle is None:
            return None
        return max(0.0, self._handle.when() - asyncio.get_running_loop().time())

    def _fire(self) -> None:
        self._handle = None
        self.overran = self.timeout_s
        if self._conn is not None:
            self._cut(self._conn)

    @staticmethod
    def _cut(conn: Any) -> None:
        """Shut the socket down under libpq: its next read sees the end of the stream."""
        pgconn = conn.pgconn
        with contextlib.suppress(Exception):
            fd = os.dup(pgconn.socket)
            try:
                with socket.socket(fileno=fd) as s:  # closing our dup leaves libpq's descriptor open
                    fd = -1
                    s.shutdown(socket.SHUT_RDWR)
            finally:
                if fd >= 0:
                    os.close(fd)

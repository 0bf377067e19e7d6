"""Settings of the read model, and the factory that opens the one they name.

Environment variables (all optional; nothing is read at import time):

================================  ==========  ==============================================================
``SESSION_STORAGE``               memory      ``memory``: in-process read model; ``postgres``: PostgreSQL
``DB_CONNECTION_STRING``          (none)      PostgreSQL conninfo or URL; required with ``postgres``
``SESSIONS_DB_SCHEMA``            public      the schema of the read model's tables
``SESSIONS_DB_POOL_MIN``          1           connections kept open
``SESSIONS_DB_POOL_MAX``          10          connections at most
``SESSIONS_DB_POOL_TIMEOUT_S``    10          seconds opening the pool waits for its first connections
``SESSIONS_DB_QUERY_TIMEOUT_S``   2           a query answers within this (connection wait included) or
                                              raises ``ReadModelUnavailable``, whatever the server does
``SESSIONS_DB_WRITE_TIMEOUT_S``   30          the same for a write (a projector's batch, a rebuild's step);
                                              also the connections' ``statement_timeout``
================================  ==========  ==============================================================

A value that cannot be used is refused by the constructor with ``ConfigurationError`` (``invalid_storage``,
``missing_db_connection_string``, ``invalid_db_connection_string``, ``invalid_schema``, ``invalid_pool``,
``invalid_setting``), before anything connects.

>>> read_model = await open_read_model(ReadModelSettings.from_env())   # migrations run for postgres
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from events.errors import ConfigurationError

from .api import ReadModel
from .migrations import check_schema_name
from .migrations import migrate as migrate_schema

__all__ = ["ENV", "ProjectionSettings", "ReadModelSettings", "check_dsn", "migrate", "open_read_model"]

ENV = {
    "storage": "SESSION_STORAGE",
    "dsn": "DB_CONNECTION_STRING",
    "schema": "SESSIONS_DB_SCHEMA",
    "pool_min": "SESSIONS_DB_POOL_MIN",
    "pool_max": "SESSIONS_DB_POOL_MAX",
    "pool_timeout_s": "SESSIONS_DB_POOL_TIMEOUT_S",
    "query_timeout_s": "SESSIONS_DB_QUERY_TIMEOUT_S",
    "write_timeout_s": "SESSIONS_DB_WRITE_TIMEOUT_S",
}


@dataclass(frozen=True, slots=True)
class ReadModelSettings:
    storage: Literal["memory", "postgres"] = "memory"
    dsn: str | None = None
    schema: str = "public"
    pool_min: int = 1
    pool_max: int = 10
    pool_timeout_s: float = 10.0
    query_timeout_s: float = 2.0
    write_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if self.storage not in ("memory", "postgres"):
            raise ConfigurationError(
                f"{ENV['storage']} must be 'memory' or 'postgres', not {self.storage!r}",
                code="invalid_storage",
            )
        if self.storage == "postgres" and not self.dsn:
            raise ConfigurationError(
                f"{ENV['storage']}=postgres needs {ENV['dsn']}", code="missing_db_connection_string"
            )
        if self.storage == "postgres" and self.dsn:
            check_dsn(self.dsn)
        try:
            check_schema_name(self.schema)
        except ValueError as e:
            raise ConfigurationError(str(e), code="invalid_schema") from e
        if not 0 <= self.pool_min <= self.pool_max or self.pool_max < 1:
            raise ConfigurationError("the pool sizes need 0 <= min <= max and max >= 1", code="invalid_pool")
        if not (self.pool_timeout_s > 0 and self.query_timeout_s > 0 and self.write_timeout_s > 0):
            raise ConfigurationError("the read model's timeouts must be positive", code="invalid_setting")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ReadModelSettings:
        env = os.environ if env is None else env
        try:
            return cls(
                storage=(env.get(ENV["storage"]) or "memory").strip().lower(),  # type: ignore[arg-type]
                dsn=env.get(ENV["dsn"]) or None,
                schema=env.get(ENV["schema"]) or "public",
                pool_min=int(env.get(ENV["pool_min"]) or 1),
                pool_max=int(env.get(ENV["pool_max"]) or 10),
                pool_timeout_s=float(env.get(ENV["pool_timeout_s"]) or 10.0),
                query_timeout_s=float(env.get(ENV["query_timeout_s"]) or 2.0),
                write_timeout_s=float(env.get(ENV["write_timeout_s"]) or 30.0),
            )
        except ValueError as e:
            raise ConfigurationError(
                f"a read model setting is not a number: {e}", code="invalid_setting"
            ) from e


ProjectionSettings = ReadModelSettings  # the name service/app.py imports


def check_dsn(dsn: str) -> None:
    """Refuse a connection string libpq cannot parse, with its reason, before any pool retries it quietly.
    (A string that parses but names a wrong host, port, user or password fails at the first connection:
    ``PostgresReadModel.open`` tries one before it fills its pool.)"""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    try:
        conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as e:
        # The DSN itself is not repeated: it may hold a password.
        raise ConfigurationError(
            f"{ENV['dsn']} is not a PostgreSQL connection string: {e}".strip(),
            code="invalid_db_connection_string",
        ) from e


async def open_read_model(settings: ReadModelSettings) -> ReadModel:
    """The read model the settings name, ready to use (PostgreSQL: pool open, migrations applied). Close it
    with its ``close()``."""
    if settings.storage == "memory":
        from .memory import InMemoryReadModel

        return InMemoryReadModel()
    from .postgres import PostgresReadModel

    assert settings.dsn is not None
    return await PostgresReadModel.open(
        settings.dsn,
        settings.schema,
        min_size=settings.pool_min,
        max_size=settings.pool_max,
        timeout=settings.pool_timeout_s,
        query_timeout_s=settings.query_timeout_s,
        write_timeout_s=settings.write_timeout_s,
    )


async def migrate(settings: ReadModelSettings) -> list[int]:
    """Apply the migrations the settings' database lacks (the ``migrate`` command). Memory: nothing to do."""
    if settings.storage == "memory":
        return []
    assert settings.dsn is not None
    return await migrate_schema(settings.dsn, settings.schema)

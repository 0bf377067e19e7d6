"""The PostgreSQL read model of a test's own schema, and the environment a projector process needs for it."""

from __future__ import annotations

import os

from projections.postgres import PostgresReadModel
from tests.fix_pg import PG_DSN
from tests.fix_redis import REDIS_URL


async def open_pg_read_model(schema: str) -> PostgresReadModel:
    """Opening applies the migrations."""
    return await PostgresReadModel.open(PG_DSN, schema)


def projector_env(schema: str, prefix: str, partitions: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SESSIONS_", "SESSION_"))}
    env.update(
        REDIS_URL=REDIS_URL,
        SESSIONS_REDIS_PREFIX=prefix,
        SESSIONS_PARTITIONS=str(partitions),
        SESSION_STORAGE="postgres",
        DB_CONNECTION_STRING=PG_DSN,
        SESSIONS_DB_SCHEMA=schema,
        SESSIONS_DB_POOL_MAX="2",
    )
    return env

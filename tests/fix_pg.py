"""PostgreSQL fixtures: the real server (127.0.0.1:5432, database ``test`` by default), one schema per test.

A run where PostgreSQL is unreachable fails loudly with the command that starts it; it never skips.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest

PG_DSN = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
START_PG = 'pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start'


def check_pg() -> None:
    try:
        with psycopg.connect(PG_DSN, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as e:
        pytest.fail(f"PostgreSQL at {PG_DSN} is unreachable ({e}); start it with:\n  {START_PG}")


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A fresh, empty schema; dropped afterwards."""
    check_pg()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    yield schema
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def pg_dsn(pg_schema: str) -> str:
    """A DSN whose connections use the test's own schema."""
    sep = "&" if "?" in PG_DSN else "?"
    return f"{PG_DSN}{sep}options=-csearch_path%3D{pg_schema}"

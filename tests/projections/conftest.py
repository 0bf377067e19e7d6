"""Fixtures of the read-model tests: a read model of either kind, and a log to generate events with."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import fakeredis
import pytest

from events import EventLog, LogSettings
from projections.api import ReadModel
from projections.memory import InMemoryReadModel
from projections.postgres import PostgresReadModel
from tests.fix_pg import PG_DSN


@pytest.fixture(params=["memory", "postgres"])
async def read_model(request: pytest.FixtureRequest) -> AsyncIterator[ReadModel]:
    """The contract suite runs on both: the in-memory read model and PostgreSQL on a fresh schema."""
    if request.param == "memory":
        yield InMemoryReadModel()
        return
    schema = request.getfixturevalue("pg_schema")
    rm = await PostgresReadModel.open(PG_DSN, schema, min_size=1, max_size=4)
    try:
        yield rm
    finally:
        await rm.close()


@pytest.fixture
async def log() -> AsyncIterator[EventLog]:
    """The real log on fakeredis (its append script assigns versions and positions), 4 partitions."""
    client = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    event_log = EventLog(client, LogSettings(prefix=f"t{uuid.uuid4().hex[:8]}", partitions=4))
    await event_log.setup()
    yield event_log
    await event_log.close()

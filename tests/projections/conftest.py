"""Fixtures of the read-model tests: a log to generate events with (each backend's test module opens its
read model: see ``contract.ReadModelCase``)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import fakeredis
import pytest

from events import EventLog, LogSettings


@pytest.fixture
async def log() -> AsyncIterator[EventLog]:
    """The real log on fakeredis (its append script assigns versions and positions), 4 partitions."""
    client = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    event_log = EventLog(client, LogSettings(prefix=f"t{uuid.uuid4().hex[:8]}", partitions=4))
    await event_log.setup()
    yield event_log
    await event_log.close()

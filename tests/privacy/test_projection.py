"""The projection of ``user.forgotten.v1`` on both read models: the user's memory in every scope and their
deleted session rows go; live sessions, other users and what the user id gets afterwards stay."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import fakeredis
import pytest

from events import EventLog, LogSettings
from events.keys import partition_of
from projections.api import ReadModel
from tests.events.factories import added, created, deleted, forgotten, msg, saved
from tests.projections.helpers import dump, project

T = "default"


@pytest.fixture
async def log() -> AsyncIterator[EventLog]:
    client = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    event_log = EventLog(client, LogSettings(prefix=f"t{uuid.uuid4().hex[:8]}", partitions=4))
    await event_log.setup()
    yield event_log
    await event_log.close()


def _session_beside(user: str, partitions: int = 4) -> str:
    """A session id in the partition of the user's memory aggregate, so both land in one batch."""
    want = partition_of(T, "memory", user, partitions)
    return next(f"s{i}" for i in range(1000) if partition_of(T, "session", f"s{i}", partitions) == want)


@pytest.mark.parametrize("one_batch", [True, False])
async def test_forgotten_removes_the_users_rows(
    log: EventLog, read_model: ReadModel, one_batch: bool
) -> None:
    near = _session_beside("u1")
    far = next(
        f"f{i}"
        for i in range(1000)
        if partition_of(T, "session", f"f{i}", 4) != partition_of(T, "memory", "u1", 4)
    )
    for sid in (near, far, "live"):
        await log.append([created(sid, "u1")])
        await log.append([added(sid, msg("user", "hello"))])
        await log.append([saved("u1", "k", 1, session=sid)])
    await log.append([created("other", "u2")])
    await log.append([saved("u2", "k", "kept")])
    await log.append([saved("u1", "k", "old")])
    await log.append([saved("u1", "k", "older")])  # version 2
    if not one_batch:
        await project(log, read_model)
    await log.append([deleted(far, reason="user_forgotten")])  # erased by itself, whatever the order
    if not one_batch:
        await project(log, read_model)
    await log.append([deleted(near)])  # erased by user.forgotten, in the same batch
    await log.append([forgotten("u1")])
    await log.append([saved("u1", "k", "new")])  # the user id again, after the erasure
    await project(log, read_model)

    assert await read_model.get_session(T, near) is None
    assert await read_model.get_session(T, far) is None
    live = await read_model.get_session(T, "live")  # live sessions are the forget command's to delete
    assert live is not None and not live.deleted
    memory = await read_model.get_memory(T, "u1")
    assert {k: (m.value, m.version) for k, m in memory.items()} == {"k": ("new", 1)}
    assert await read_model.get_memory(T, "u1", session_id=near) == {}
    assert (await read_model.get_memory(T, "u2"))["k"].value == "kept"
    assert (await read_model.get_session(T, "other")) is not None
    page = await read_model.list_sessions(T, "u1")
    assert [s.session_id for s in page.sessions] == ["live"]
    # The archive keeps every event (its contents are ciphertext in the service), forgotten included.
    tables = await dump(read_model)
    assert sum(1 for row in tables["archive"] if "user.forgotten.v1" in row) == 1


async def test_twice_is_harmless(log: EventLog, read_model: ReadModel) -> None:
    await log.append([saved("u1", "k", 1)])
    first = await log.append([forgotten("u1")])
    second = await log.append([forgotten("u1")])
    assert (first.removed, second.removed) == (1, 0) and second.appended
    await project(log, read_model)
    assert await read_model.get_memory(T, "u1") == {}

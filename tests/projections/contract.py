"""The read-model contract (``projections.api.ReadModel``) as base classes, as eventsourcing's recorder test
cases do, one module per subject:

* ``contract_queries.QueryContract``: sessions, messages and their pages, memory, the audit;
* ``contract_writes.WriteContract``: checkpoints, compare-and-set, fencing, the guard, poison, dead letters;
* ``contract_rebuild.RebuildContract``: rebuild, the switch, the lifecycle.

Each backend's test module subclasses all three and says how to open its read model (``create_read_model``,
from ``ReadModelCase`` here), so every test runs on every backend: the in-memory read model
(``test_memory.py``) and PostgreSQL (``test_postgres.py``). This module holds that hook and the helpers the
subjects share.

Events come from the real log (its append script, on fakeredis), so versions and positions are the log's.
No class here is collected on its own (their names do not start with ``Test``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator

import pytest

from events import EventLog
from projections.api import ReadModel
from tests.events.factories import added, call, cleared, created, deleted, mem_deleted, msg, saved

from .helpers import project

T = "default"


async def append(log: EventLog, *events):  # type: ignore[no-untyped-def]
    result = await log.append(list(events))
    assert result.appended
    return result


async def written(log: EventLog, rm: ReadModel, *events):  # type: ignore[no-untyped-def]
    """Append, then project; returns the append result."""
    result = await append(log, *events)
    await project(log, rm)
    return result


async def workload(log: EventLog, rounds: int = 3, tenant_prefix: str = "") -> None:
    """A bit of everything the log accepts, over several sessions, users and partitions."""
    for r in range(rounds):
        for i in range(4):
            sid, user = f"{tenant_prefix}s{r}-{i}", f"u{i % 2}"
            await log.append([created(sid, user, round=r)])
            await log.append(
                [
                    added(
                        sid,
                        msg("user", f"hello {r}-{i}"),
                        msg("assistant", None, tool_calls=[call(f"c{r}{i}")]),
                    )
                ]
            )
            await log.append([added(sid, msg("tool", "result", tool_call_id=f"c{r}{i}"))])
            await log.append([saved(user, f"k{i}", {"r": r, "i": i})])
            await log.append([saved(user, "notes", [r, i], session=sid)])
            if i == 1:
                await log.append([mem_deleted(user, f"k{i}")])
            if i == 2:
                await log.append([cleared(user, session=sid)])
            if i == 3:
                await log.append([deleted(sid)])
        await log.append([cleared("u1")])


class ReadModelCase(ABC):
    """The backend hook of the contract classes. A backend's test class implements ``create_read_model``."""

    @abstractmethod
    async def create_read_model(self, request: pytest.FixtureRequest) -> ReadModel:
        """A new, empty read model of the backend under test (closed by the fixture)."""

    @pytest.fixture
    async def read_model(self, request: pytest.FixtureRequest) -> AsyncIterator[ReadModel]:
        rm = await self.create_read_model(request)
        try:
            yield rm
        finally:
            await rm.close()

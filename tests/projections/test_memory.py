"""The in-memory read model keeps the whole read-model contract (``contract``: queries, writes, rebuild)."""

from __future__ import annotations

import pytest

from projections.api import ReadModel
from projections.memory import InMemoryReadModel

from .contract_queries import QueryContract
from .contract_rebuild import RebuildContract
from .contract_writes import WriteContract


class TestInMemoryReadModel(QueryContract, WriteContract, RebuildContract):
    async def create_read_model(self, request: pytest.FixtureRequest) -> ReadModel:
        return InMemoryReadModel()

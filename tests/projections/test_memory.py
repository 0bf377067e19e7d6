"""The in-memory read model keeps the whole read-model contract (``contract.ReadModelContract``)."""

from __future__ import annotations

import pytest

from projections.api import ReadModel
from projections.memory import InMemoryReadModel

from .contract import ReadModelContract


class TestInMemoryReadModel(ReadModelContract):
    async def create_read_model(self, request: pytest.FixtureRequest) -> ReadModel:
        return InMemoryReadModel()

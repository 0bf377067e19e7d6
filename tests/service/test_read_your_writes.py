"""Read-your-writes on the real servers: 1,000 write-then-read rounds over HTTP, never a stale read, while
projectors run concurrently in other tasks (as separate ``sessions project`` workers would: the API process
does not project, so every read relies on waiting for the checkpoints)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from consumers.projector import Projector
from service.app import Application
from service.http.app import create_app
from tests.fix_service import close_application, make_application

ROUNDS = 1000


@pytest.fixture
async def api_without_projector(
    key_prefix: str, request: pytest.FixtureRequest
) -> AsyncIterator[Application]:
    app, log = await make_application("real", key_prefix, request, projector=False, read_timeout_s=15)
    yield app
    await close_application(app, log, "real")


async def test_a_thousand_writes_are_each_read_back_at_once(api_without_projector: Application) -> None:
    app = api_without_projector
    stop = asyncio.Event()
    # Two workers share the partitions through leases, like the two projector services of docker-compose.
    workers = [Projector(app.log, app.read_model, worker_id=f"w{i}", block_ms=50) for i in range(2)]
    tasks = [asyncio.create_task(w.run(stop)) for w in workers]
    transport = httpx.ASGITransport(app=create_app(app))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://sessions.test") as http:
            r = await http.post("/v1/sessions", json={"user_id": "rw", "session_id": "rw-1"})
            assert r.status_code == 201, r.text
            for i in range(ROUNDS):
                w = await http.post(
                    "/v1/sessions/rw-1/messages", json={"messages": [{"role": "user", "content": f"m{i}"}]}
                )
                assert w.status_code == 201, w.text
                page = (
                    await http.get("/v1/sessions/rw-1/messages", params={"limit": 1, "order": "desc"})
                ).json()
                assert page["total"] == i + 1, (i, page)
                assert page["messages"][0]["content"] == f"m{i}", (i, page)
                if i % 4 == 0:
                    await http.put("/v1/users/rw/memory/last", json={"value": i})
                    got = (await http.get("/v1/users/rw/memory", params={"key": "last"})).json()
                    assert got == {"memories": {"last": i}}, (i, got)
            session = (await http.get("/v1/sessions/rw-1")).json()
            assert session["message_count"] == ROUNDS and session["version"] == ROUNDS + 1
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
    assert sum(w.stats.applied for w in workers) >= ROUNDS + ROUNDS // 4

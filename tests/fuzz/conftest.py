"""Fixtures of the fuzz tests: a real HTTP server (uvicorn on a free loopback port, in a thread of its own)
for schemathesis, over the embedded service (fakeredis + in-memory read model + in-process projector) and
over the real Redis and PostgreSQL (where a NUL byte or an odd string reaches a real driver)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
import uvicorn

from service.http.app import create_app
from service.settings import ServiceSettings
from tests.fix_pg import PG_DSN, check_pg, drop_schemas
from tests.fix_redis import REDIS_URL, delete_prefix, real_redis


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module", params=["embedded", "real"])
def base_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """The served app: embedded, or on the real Redis and PostgreSQL (a prefix and a schema of its own)."""
    port = _free_port()
    tag = uuid.uuid4().hex[:10]
    env = {"SESSIONS_PARTITIONS": "4", "SESSIONS_READ_TIMEOUT_S": "15"}  # generous: a loaded machine
    if request.param == "real":
        check_pg()
        env |= {
            "SESSION_STORAGE": "postgres",
            "DB_CONNECTION_STRING": PG_DSN,
            "SESSIONS_DB_SCHEMA": f"fuzz_{tag}",
            "SESSIONS_DB_POOL_MAX": "4",
            "REDIS_URL": REDIS_URL,
            "SESSIONS_REDIS_PREFIX": f"fuzz-{tag}",
        }
    settings = ServiceSettings.from_env(env)
    config = uvicorn.Config(
        create_app(settings=settings),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
        http="h11",  # the parser `sessions serve` uses (service/cli/serve.py)
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="fuzz-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("the fuzzing HTTP server did not start (see the log above)")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        if request.param == "real":
            drop_schemas(f"fuzz_{tag}")
            asyncio.run(_delete_prefix(f"fuzz-{tag}"))


async def _delete_prefix(prefix: str) -> None:
    client = await real_redis()
    try:
        await delete_prefix(client, prefix)
    finally:
        await client.aclose()


@pytest.fixture(scope="module")
def http(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        yield client

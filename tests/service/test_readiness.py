"""Readiness tells what can be served (issue 15 item 5): the log reachable and configured, the read model
reachable and migrated, and a live projector (a held, unexpired lease) for every partition; otherwise 503
with a code naming what is missing. On the embedded backend and the real servers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from consumers.leases import LeaseManager
from consumers.projector import Projector
from events import EventLog
from projections.api import PROJECTION
from service.app import Application
from service.http.app import create_app
from tests.fix_redis import delete_prefix
from tests.fix_service import close_application, make_application

PARTITIONS = 8


def client(app: Application) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(app)), base_url="http://t")


@pytest.fixture
async def no_projector(
    backend: str, key_prefix: str, request: pytest.FixtureRequest
) -> AsyncIterator[Application]:
    """``serve --no-projector``: reads depend on workers elsewhere."""
    app, log = await make_application(backend, key_prefix, request, projector=False)
    yield app
    await close_application(app, log, backend)


async def until_ready(http: httpx.AsyncClient, seconds: float = 10) -> httpx.Response:
    deadline = time.monotonic() + seconds
    while (r := await http.get("/readyz")).status_code != 200:
        assert time.monotonic() < deadline, r.text
        await asyncio.sleep(0.05)
    return r


async def test_without_a_live_projector_it_is_not_ready_and_says_which_partitions(
    no_projector: Application,
) -> None:
    app = no_projector
    async with client(app) as http:
        r = await http.get("/readyz")
        assert r.status_code == 503 and r.headers["retry-after"] == "1", r.text
        body = r.json()
        assert body["code"] == "partitions_unowned"
        assert body["partitions"] == list(range(PARTITIONS))
        # A worker elsewhere takes every partition: ready, and it says the projector is external.
        stop = asyncio.Event()
        worker = Projector(app.log, app.read_model, worker_id="elsewhere", lease_ttl_ms=400, block_ms=50)
        task = asyncio.create_task(worker.run(stop))
        try:
            r = await until_ready(http)
            assert r.json()["checks"] == {"log": "ok", "read_model": "ok", "projector": "external"}
        finally:
            stop.set()
            await task
        # It stopped (and released its leases): not ready again.
        r = await http.get("/readyz")
        assert r.status_code == 503 and r.json()["code"] == "partitions_unowned"


async def test_a_dead_workers_partitions_are_unowned_once_its_leases_expire(
    no_projector: Application,
) -> None:
    app = no_projector
    dead = LeaseManager(
        app.log.redis, app.log.keys, PARTITIONS, projection=PROJECTION, worker_id="dead", ttl_ms=300
    )
    for p in range(PARTITIONS):
        assert await dead.acquire(p) is not None
    assert (await app.readiness())["projector"] == "external"
    await asyncio.sleep(0.5)  # it never renews
    async with client(app) as http:
        body = (await http.get("/readyz")).json()
        assert body["code"] == "partitions_unowned" and body["partitions"] == list(range(PARTITIONS))


async def test_a_log_that_lost_its_data_is_not_ready(
    backend: str, key_prefix: str, request: pytest.FixtureRequest
) -> None:
    app, log = await make_application(backend, key_prefix, request)  # with its in-process projector
    try:
        async with client(app) as http:
            r = await http.get("/readyz")
            assert r.status_code == 200 and r.json()["checks"]["projector"] == "in-process", r.text
            # Redis restarted empty: the projector takes its leases again, but the log has no configuration.
            await delete_prefix(log.redis, key_prefix)
            await asyncio.sleep(0.1)
            r = await http.get("/readyz")
            assert r.status_code == 503, r.text
            body = r.json()
            assert body["code"] == "log_not_configured" and body["partitions"] == list(range(PARTITIONS))
    finally:
        await close_application(app, log, backend)


async def test_another_partition_count_is_not_ready(
    backend: str, key_prefix: str, request: pytest.FixtureRequest
) -> None:
    app, log = await make_application(backend, key_prefix, request)
    try:
        await log.redis.hset(log.keys.config(3), "partitions", 16)
        with pytest.raises(Exception) as e:
            await app.readiness()
        assert getattr(e.value, "code", None) == "partition_count_mismatch"
    finally:
        await close_application(app, log, backend)


async def test_started_means_every_partition_has_its_in_process_projector(
    backend: str, key_prefix: str, request: pytest.FixtureRequest
) -> None:
    app, log = await make_application(backend, key_prefix, request)
    try:
        # No wait: Application.start() returns once the projector has taken its leases.
        assert await app.readiness() == {"log": "ok", "read_model": "ok", "projector": "in-process"}
        assert isinstance(log, EventLog)
    finally:
        await close_application(app, log, backend)


async def test_serve_with_its_projector_plus_two_workers_owns_every_partition(
    backend: str, key_prefix: str, request: pytest.FixtureRequest
) -> None:
    # Issue 15 item 2: 16 partitions, three projectors (the API's own and two workers); before, one
    # partition had no owner for ever and the service never got ready again.
    from events import LogSettings

    settings = LogSettings(prefix=key_prefix, partitions=16)
    app, log = await make_application(backend, key_prefix, request, log_settings=settings)
    stop = asyncio.Event()
    workers = [
        Projector(app.log, app.read_model, worker_id=f"worker-{i}", lease_ttl_ms=600, block_ms=50)
        for i in range(2)
    ]
    tasks = [asyncio.create_task(w.run(stop)) for w in workers]
    try:
        async with client(app) as http:
            deadline = time.monotonic() + 20
            while True:
                shares = sorted([len(app.projector.owned), *(len(w.owned) for w in workers)])
                r = await http.get("/readyz")
                if shares == [5, 5, 6] and r.status_code == 200:
                    break
                assert time.monotonic() < deadline, (shares, r.text)
                await asyncio.sleep(0.05)
            assert r.json()["checks"]["projector"] == "in-process"
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        await close_application(app, log, backend)

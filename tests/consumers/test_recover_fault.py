"""Fault test (issue 15 item 8): the service on a redis-server of the test's own and PostgreSQL; data written
and projected; then that Redis restarted EMPTY (a new process, no persistence). Writes answer 503
``log_state_lost`` (in the running service and in one started afterwards), reads still serve what was
projected, opened (the data keys come back from their durable copy); ``recover-log`` restores the log's
state; then writes continue at the right versions and owners hold. The shared 6379 is never touched."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import io
import os
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from consumers.progress import Progress
from consumers.recover import recover_log
from events import EventLog, LogSettings
from projections.settings import ReadModelSettings
from service.app import Application
from service.http.app import create_app
from service.settings import ServiceSettings
from tests.fix_pg import PG_DSN

from .test_redis_outage import OwnRedis, free_port

KEK = base64.b64encode(os.urandom(32)).decode()


class EmptyRedis(OwnRedis):
    """No persistence at all: a restart is a Redis that lost every key."""

    def start(self) -> None:
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory)]
        args += ["--appendonly", "no", "--save", "", "--logfile", "redis.log"]
        self.proc = subprocess.Popen(
            ["redis-server", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                assert time.monotonic() < deadline, "the test's own redis-server did not start"
                time.sleep(0.02)


@pytest.fixture
def empty_redis(tmp_path: Path) -> Iterator[EmptyRedis]:
    server = EmptyRedis(tmp_path, free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def settings(empty_redis: EmptyRedis, pg_schema: str) -> ServiceSettings:
    return dataclasses.replace(
        ServiceSettings(read_timeout_s=15.0),
        kek=KEK,
        log=LogSettings(redis_url=f"redis://127.0.0.1:{empty_redis.port}/0", partitions=8, prefix="fault"),
        read_model=ReadModelSettings(storage="postgres", dsn=PG_DSN, schema=pg_schema, pool_max=4),
    )


@pytest.fixture
async def app(settings: ServiceSettings) -> AsyncIterator[Application]:
    application = await Application.open(settings)
    yield application
    await application.close()


def client(app: Application) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(app)), base_url="http://t")


async def projected(app: Application) -> None:
    deadline = time.monotonic() + 15
    while True:
        heads = await app.log.heads()
        checkpoints = await app.read_model.checkpoints()
        if all(h is None or (p in checkpoints and checkpoints[p].position == h) for p, h in heads.items()):
            return
        assert time.monotonic() < deadline, "the in-process projector did not catch up"
        await asyncio.sleep(0.02)


async def call(http: httpx.AsyncClient, method: str, path: str, body: object = None) -> httpx.Response:
    """A request, again when it met a connection the restart closed (a plain, retryable outage: each
    pooled connection fails once)."""
    for _ in range(10):
        r = await http.request(method, path, json=body)
        if r.status_code != 503 or r.json().get("code") != "unavailable":
            return r
    return r


async def version_of(http: httpx.AsyncClient, sid: str) -> int:
    events = (await call(http, "GET", f"/v1/sessions/{sid}/events")).json()["events"]
    return max(e["version"] for e in events)


async def test_redis_restarted_empty_then_recover_log(
    app: Application, settings: ServiceSettings, empty_redis: EmptyRedis
) -> None:
    figures: dict[str, float] = {}
    async with client(app) as http:
        for sid, user in (("a1", "alice"), ("a2", "alice"), ("b1", "bob")):
            r = await http.post("/v1/sessions", json={"user_id": user, "session_id": sid})
            assert r.status_code == 201, r.text
            for i in range(5):
                r = await http.post(
                    f"/v1/sessions/{sid}/messages",
                    json={"messages": [{"role": "user", "content": f"{sid}-{i}"}]},
                )
                assert r.status_code == 201, r.text
        r = await http.put("/v1/users/alice/memory/home", json={"value": "Porto"})
        assert r.status_code == 200, r.text
        assert (await http.delete("/v1/sessions/a2")).status_code in (200, 204)
        before = await version_of(http, "a1")
        assert before == 6

        await projected(app)  # what was not projected is lost with Redis (the README says so)
        empty_redis.stop()  # Redis restarted empty
        empty_redis.start()
        refused = 0
        writes = [
            ("POST", "/v1/sessions", {"user_id": "mallory", "session_id": "a1"}),
            ("POST", "/v1/sessions", {"user_id": "mallory", "session_id": "a2"}),
            ("POST", "/v1/sessions/a1/messages", {"messages": [{"role": "user", "content": "lost?"}]}),
            ("PUT", "/v1/users/alice/memory/home", {"value": "Lisbon"}),
        ]
        for method, path, body in writes:
            r = await call(http, method, path, body)
            assert r.status_code == 503 and r.json()["code"] == "log_state_lost", (path, r.text)
            refused += 1
        figures["writes refused (running service)"] = refused
        # Reads serve what was projected, opened: the data keys come back from their durable copy.
        page = (await call(http, "GET", "/v1/sessions/a1/messages")).json()
        assert [m["content"] for m in page["messages"]] == [f"a1-{i}" for i in range(5)]

    # A service started on the empty Redis finds the log behind its read models: writes refused too.
    restarted = await Application.open(settings)
    try:
        async with client(restarted) as http:
            r = await call(http, "POST", "/v1/sessions", {"user_id": "mallory", "session_id": "b1"})
            assert r.status_code == 503 and r.json()["code"] == "log_state_lost", r.text
            # Readiness tells the truth: a log that lost its state cannot serve writes.
            r = await call(http, "GET", "/readyz")
            assert r.status_code == 503 and r.json()["code"] == "log_state_lost", r.text
    finally:
        await restarted.close()

    out = io.StringIO()
    bar = Progress(out, "recover-log")
    started = time.monotonic()
    operator = EventLog.connect(settings.log)  # `sessions recover-log` is a process of its own
    try:
        result = await recover_log(operator, app.read_model, progress=bar.update)
    finally:
        await operator.close()
    bar.close()
    figures["recovery seconds"] = time.monotonic() - started
    assert result.events == 3 + 15 + 1 + 1 and "recover-log: 20" in out.getvalue()

    async with client(app) as http:
        r = await call(http, "POST", "/v1/sessions", {"user_id": "mallory", "session_id": "a1"})
        assert r.status_code == 403, r.text
        r = await call(http, "POST", "/v1/sessions", {"user_id": "alice", "session_id": "a2"})
        assert r.status_code in (404, 409, 410), r.text  # deleted: its id cannot be reused
        r = await call(
            http, "POST", "/v1/sessions/a1/messages", {"messages": [{"role": "user", "content": "a1-5"}]}
        )
        assert r.status_code == 201, r.text
        assert r.json()["version"] == before + 1
        page = (await call(http, "GET", "/v1/sessions/a1/messages")).json()
        assert [m["content"] for m in page["messages"]] == [f"a1-{i}" for i in range(6)]
        versions = [
            e["version"] for e in (await call(http, "GET", "/v1/sessions/a1/events")).json()["events"]
        ]
        assert versions == list(range(1, before + 2))  # no gap, no duplicate
        memory = (await call(http, "GET", "/v1/users/alice/memory")).json()["memories"]
        assert memory == {"home": "Porto"}
        r = await call(http, "GET", "/readyz")  # the log serves again (this app projects by hand)
        assert r.status_code == 200 or r.json()["code"] != "log_state_lost", r.text
    print(f"\nfigures: {figures}")

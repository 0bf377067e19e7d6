"""A Redis outage under a running projector: it waits with backoff and goes on where it was, skipping nothing.
The test runs its own Redis (AOF on, another loopback port, a temporary directory), stops it mid-run and
starts it again on the same data; the shared 6379 is never touched."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from consumers.projector import Projector
from events import EventLog, LogSettings
from projections.memory import InMemoryReadModel

from .fakes import Recording
from .test_projector import fill


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class OwnRedis:
    def __init__(self, directory: Path, port: int) -> None:
        self.directory, self.port = directory, port
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
                "--logfile",
                "redis.log",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                assert time.monotonic() < deadline, "the test's own redis-server did not start"
                time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path, free_port())
    server.start()
    yield server
    server.stop()


async def test_a_redis_outage_is_waited_out_and_nothing_is_skipped(own_redis: OwnRedis) -> None:
    client = aioredis.Redis.from_url(f"redis://127.0.0.1:{own_redis.port}/0", socket_timeout=1)
    log = EventLog(client, LogSettings(prefix="outage", partitions=4))
    await log.setup()
    rm = Recording(InMemoryReadModel())
    worker = Projector(log, rm, worker_id="w", lease_ttl_ms=1000, backoff_initial_s=0.02, backoff_max_s=0.2)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        n = await fill(log, 6, 2)
        for _ in range(200):
            if len(rm.applied) == n:
                break
            await asyncio.sleep(0.02)
        assert len(rm.applied) == n
        own_redis.stop()
        await asyncio.sleep(0.5)  # the worker hits the outage and backs off
        assert worker.stats.outages >= 1 and not task.done()
        own_redis.start()
        n += await fill(log, 6, 2, tag="after")
        for _ in range(500):
            if len(rm.applied) >= n:
                break
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        await task
        await client.aclose()
    assert Counter(rm.applied).most_common(1)[0][1] == 1 and len(rm.applied) == n
    page = await rm.get_messages("default", "after5")
    assert [m.content for m in page.messages] == ["q0", "a0", "q1", "a1"]

"""The docker-compose topology without Docker: ``sessions serve --no-projector`` and a separate
``sessions project`` worker, as processes on the real servers, used through the blocking SDK."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
import redis

from service.sdk import SessionsClient
from tests.fix_pg import PG_DSN
from tests.fix_redis import REDIS_URL

ROUNDS = 50


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _sessions(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", "from service.cli import main; main()", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.fixture
def stack(pg_schema: str, key_prefix: str) -> Iterator[str]:
    port = _free_port()
    env = {
        **os.environ,
        "SESSION_STORAGE": "postgres",
        "DB_CONNECTION_STRING": PG_DSN,
        "SESSIONS_DB_SCHEMA": pg_schema,
        "REDIS_URL": REDIS_URL,
        "SESSIONS_REDIS_PREFIX": key_prefix,
        "SESSIONS_PARTITIONS": "4",
        "SESSIONS_HTTP_PORT": str(port),
        "SESSIONS_PORT": str(_free_port()),
        "SESSIONS_READ_TIMEOUT_S": "15",
    }
    api = _sessions("serve", "--no-projector", env=env)
    url = f"http://127.0.0.1:{port}"
    # Ready means every partition has a live projector: the worker first, then wait for readiness.
    worker = _sessions("project", "--worker-id", "topology-1", "--block-ms", "50", env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass  # not listening yet
            if api.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"sessions serve did not start:\n{api.stdout.read() if api.stdout else ''}")
            time.sleep(0.1)
        yield url
    finally:
        for proc in (api, worker):
            if proc is not None:
                proc.terminate()
                try:
                    proc.communicate(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.communicate()
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=f"{key_prefix}:*"))
        if keys:
            client.delete(*keys)
        client.close()


def test_the_api_and_a_separate_projector_read_your_writes(stack: str) -> None:
    with SessionsClient(stack) as client:
        s = client.create_session("zoe", "topo-1")  # waits for the worker to project it
        assert s.created and s.user_id == "zoe"
        for i in range(ROUNDS):
            client.add_messages(s.session_id, [{"role": "user", "content": f"m{i}"}])
            page = client.get_messages(s.session_id, limit=1, order="desc")
            assert page.total == i + 1 and page.messages[0].content == f"m{i}"
        client.save_memory("zoe", "k", "v")
        assert client.get_memory("zoe") == {"k": "v"}
        assert client.http.get("/readyz").json()["checks"]["projector"] == "external"

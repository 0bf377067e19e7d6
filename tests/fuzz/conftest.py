"""Fixtures of the fuzz tests: a real HTTP server (uvicorn on a free loopback port, in a thread of its own,
over the embedded service: fakeredis + in-memory read model + in-process projector) for schemathesis."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn

from events import LogSettings
from service.http import create_app
from service.settings import ServiceSettings


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    port = _free_port()
    # Generous read timeout: a loaded machine must not turn reads into 503s the fuzzer would report.
    settings = ServiceSettings(http_port=port, read_timeout_s=15.0, log=LogSettings(partitions=4))
    config = uvicorn.Config(
        create_app(settings=settings), host="127.0.0.1", port=port, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="fuzz-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("the fuzzing HTTP server did not start (see the log above)")
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}"
    yield url
    server.should_exit = True
    thread.join(timeout=30)


@pytest.fixture(scope="module")
def http(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        yield client

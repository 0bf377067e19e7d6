"""Fixtures of the gRPC tests: the application core on a backend (the service tests' helpers), a gRPC server
over it on a free loopback port, an async stub generated from the .proto, and the ``genai_platform`` SDK.

``backend`` runs a test on the embedded default (fakeredis + in-memory read model) and on the real servers
(Redis at 127.0.0.1:6379 + PostgreSQL, a fresh schema per test). The SDK is blocking, as the original was:
tests call it through ``asyncio.to_thread`` so the server keeps running on the test's loop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import grpc
import pytest

from genai_platform import GenAIPlatform
from proto import sessions_pb2_grpc as pb_grpc
from service.app import Application
from service.grpc import create_grpc_server
from tests.service.conftest import BACKENDS, close_application, make_application


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def application(
    backend: str, key_prefix: str, request: pytest.FixtureRequest
) -> AsyncIterator[Application]:
    app, log = await make_application(backend, key_prefix, request)
    yield app
    await close_application(app, log, backend)


@pytest.fixture
async def target(application: Application) -> AsyncIterator[str]:
    """``host:port`` of a started gRPC server over ``application``."""
    server, port = create_grpc_server(application, "127.0.0.1:0")
    await server.start()
    yield f"127.0.0.1:{port}"
    await server.stop(None)


@pytest.fixture
async def stub(target: str) -> AsyncIterator[pb_grpc.SessionServiceStub]:
    async with grpc.aio.insecure_channel(target) as channel:
        yield pb_grpc.SessionServiceStub(channel)


@pytest.fixture
def platform(target: str) -> Iterator[GenAIPlatform]:
    with GenAIPlatform(target, timeout=20) as p:
        yield p

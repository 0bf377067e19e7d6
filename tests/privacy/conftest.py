"""Fixtures of the privacy tests: the application core on both backends (embedded: fakeredis + in-memory
read model; real: Redis + PostgreSQL), with an HTTP client and a gRPC stub over it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import httpx
import pytest

from proto import sessions_pb2_grpc as pb_grpc
from service.app import Application
from service.grpc import create_grpc_server
from service.http import create_app
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
async def http(application: Application) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(application))
    async with httpx.AsyncClient(transport=transport, base_url="http://sessions.test") as client:
        yield client


@pytest.fixture
async def stub(application: Application) -> AsyncIterator[pb_grpc.SessionServiceStub]:
    server, port = create_grpc_server(application, "127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield pb_grpc.SessionServiceStub(channel)
    finally:
        await server.stop(None)

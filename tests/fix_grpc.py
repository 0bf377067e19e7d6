"""gRPC fixtures (a pytest plugin): a started ``grpc.aio`` server over the ``application`` fixture, a stub of
it, and the ``genai_platform`` facade pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import grpc
import pytest

from genai_platform import GenAIPlatform
from proto import sessions_pb2_grpc as pb_grpc
from service.app import Application
from service.grpc.servicer import create_grpc_server


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

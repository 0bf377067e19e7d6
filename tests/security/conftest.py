"""Fixtures of the security tests: a service with API keys (a keys file re-read on every request), HTTP and
gRPC clients that send a chosen key, and the keys themselves.

Two tenants, ``alpha`` and ``beta``, each with a reader, a writer and an admin key; ``alpha`` also has a
revoked writer key. ``stack`` runs on the embedded default; ``real_stack`` on Redis + PostgreSQL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from proto import sessions_pb2_grpc as pb_grpc
from service.app import Application
from service.grpc.servicer import create_grpc_server
from service.http.app import create_app
from service.security.gate import Gate
from service.security.keys import KeyStore, create_key, revoke_key
from tests.fix_service import close_application, make_application

# name -> (tenant, role)
KEYS = {
    "alpha_reader": ("alpha", "reader"),
    "alpha_writer": ("alpha", "writer"),
    "alpha_admin": ("alpha", "admin"),
    "alpha_revoked": ("alpha", "writer"),
    "beta_reader": ("beta", "reader"),
    "beta_writer": ("beta", "writer"),
    "beta_admin": ("beta", "admin"),
}


def make_keys(path: Path) -> dict[str, str]:
    """The keys of ``KEYS`` in a fresh keys file; ``alpha_revoked`` revoked. Name -> full key."""
    out = {}
    for name, (tenant, role) in KEYS.items():
        key, full = create_key(path, tenant, role, name)
        out[name] = full
        if name == "alpha_revoked":
            revoke_key(path, key.id)
    return out


def wrong_secret(full: str) -> str:
    """The same key id with another secret of the right shape."""
    prefix, _, secret = full.rpartition("_")
    return f"{prefix}_{'A' * len(secret)}"


@dataclass
class Stack:
    application: Application
    app: Any  # the Litestar app
    gate: Gate
    keys: dict[str, str]
    keys_file: Path
    http: httpx.AsyncClient
    channel: grpc.aio.Channel
    stub: pb_grpc.SessionServiceStub
    requests: int = 0
    seen: list[tuple[str, str]] = field(default_factory=list)

    def auth(self, name: str | None) -> dict[str, str]:
        if name is None:
            return {}
        value = self.keys.get(name, name)
        return {"Authorization": f"Bearer {value}"}

    async def call(self, name: str | None, method: str, path: str, **kw: Any) -> httpx.Response:
        headers = {**self.auth(name), **kw.pop("headers", {})}
        self.requests += 1
        return await self.http.request(method, path, headers=headers, **kw)

    def metadata(self, name: str | None) -> tuple[tuple[str, str], ...]:
        if name is None:
            return ()
        return (("authorization", f"Bearer {self.keys.get(name, name)}"),)


async def open_stack(application: Application, tmp_path: Path) -> AsyncIterator[Stack]:
    keys_file = tmp_path / "keys.json"
    keys = make_keys(keys_file)
    # reload_interval_s=0: a revocation is seen by the next request (the interval has a test of its own)
    gate = Gate(KeyStore(keys_file, reload_interval_s=0))
    app = create_app(application, gate=gate)
    server, port = create_grpc_server(application, "127.0.0.1:0", gate)
    await server.start()
    transport = httpx.ASGITransport(app=app)
    async with (
        httpx.AsyncClient(transport=transport, base_url="http://sessions.test", timeout=30) as http,
        grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel,
    ):
        yield Stack(
            application, app, gate, keys, keys_file, http, channel, pb_grpc.SessionServiceStub(channel)
        )
    await server.stop(None)


@pytest.fixture
async def stack(key_prefix: str, request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stack]:
    application, log = await make_application("embedded", key_prefix, request)
    try:
        async for s in open_stack(application, tmp_path):
            yield s
    finally:
        await close_application(application, log, "embedded")


@pytest.fixture
async def real_stack(key_prefix: str, request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stack]:
    application, log = await make_application("real", key_prefix, request)
    try:
        async for s in open_stack(application, tmp_path):
            yield s
    finally:
        await close_application(application, log, "real")

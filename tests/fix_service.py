"""Service fixtures (a pytest plugin): an application core on a backend, and HTTP clients over it.

``backend`` runs a test on the embedded default (fakeredis + in-memory read model + in-process projector) and
on the real servers (Redis at 127.0.0.1:6379 + PostgreSQL, a fresh schema per test, in-process projector).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import fakeredis
import httpx
import pytest

from events import EventLog, LogSettings
from projections.api import ReadModel
from projections.memory import InMemoryReadModel
from service.app import Application
from service.http.app import create_app
from service.sdk import AsyncSessionsClient
from service.settings import ServiceSettings
from tests.fix_pg import PG_DSN
from tests.fix_redis import delete_prefix, real_redis

BACKENDS = ["embedded", "real"]


async def open_postgres_read_model(schema: str) -> ReadModel:
    from projections.postgres import PostgresReadModel

    # A small pool: several engineers' suites share the server's connection limit.
    return await PostgresReadModel.open(PG_DSN, schema, min_size=1, max_size=4)


async def make_application(
    backend: str,
    prefix: str,
    request: pytest.FixtureRequest,
    *,
    projector: bool = True,
    read_timeout_s: float = 15.0,  # generous: a loaded CI machine must not turn into 503s
    log_settings: LogSettings | None = None,
) -> tuple[Application, EventLog]:
    settings = log_settings or LogSettings(prefix=prefix, partitions=8)
    if backend == "embedded":
        log = EventLog(fakeredis.FakeAsyncRedis(), settings)
        read_model: ReadModel = InMemoryReadModel()
    else:
        log = EventLog(await real_redis(), settings)
        read_model = await open_postgres_read_model(request.getfixturevalue("pg_schema"))
    await log.setup()
    app = Application(
        log,
        read_model,
        settings=ServiceSettings(read_timeout_s=read_timeout_s, log=settings),
        projector=projector,
    )
    await app.start()
    return app, log


async def close_application(app: Application, log: EventLog, backend: str) -> None:
    await app.close()
    await app.read_model.close()
    if backend == "real":
        await delete_prefix(log.redis, log.settings.prefix)
    await log.close()


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
    """An HTTP client of the Litestar app (in process, over ASGI)."""
    transport = httpx.ASGITransport(app=create_app(application))
    async with httpx.AsyncClient(transport=transport, base_url="http://sessions.test") as client:
        yield client


@pytest.fixture
async def sdk(http: httpx.AsyncClient) -> AsyncIterator[AsyncSessionsClient]:
    async with AsyncSessionsClient(client=http) as client:
        yield client

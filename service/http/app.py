"""The HTTP/JSON adapter (Litestar, msgspec native): routes onto the application core, problem+json errors.

Read-your-writes: every write replies with its position, in the body and in the ``X-Session-Position`` header
(``<partition>:<ms>-<seq>``, comma-separated when a write touched several partitions). Every read waits,
bounded, until the read model shows what the aggregates it reads had in the log when the read began, plus any
positions the client passes in the ``X-Session-Position`` header or the ``min_position`` query parameter (same
format). A read that cannot catch up in time fails with 503, ``code: read_model_behind`` and ``Retry-After``.

Security (``service.security``, ``service.http.guard``): with API keys configured every request but the health
checks needs ``Authorization: Bearer <key>`` and the key's tenant is the request's tenant.

Request headers: ``X-Tenant-Id`` (default tenant otherwise; with keys only the key's own tenant), ``X-Actor``
(``kind:id``, kind one of user, model, service, admin; defaults to the user the request names, else the
service), ``X-Correlation-Id`` (generated when absent, echoed back, recorded in every event),
``Idempotency-Key`` (on ``POST /v1/sessions`` and ``POST .../messages``; the same key with another
request: 409 ``idempotency_key_reused``)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from litestar import Litestar, Request, Response, get
from litestar.datastructures import State
from litestar.logging.config import LoggingConfig
from litestar.openapi import OpenAPIConfig

from service.app import Application
from service.http.dependencies import App, dependencies
from service.http.guard import authorize, check_declared
from service.http.middleware import observe
from service.http.openapi import openapi_document
from service.http.problems import exception_handlers
from service.security.gate import Gate
from service.settings import LOG_FORMAT, ServiceSettings

__all__ = ["create_app", "healthz", "metrics", "openapi_json", "readyz"]

from service.http.events import audit_events, forget_user, publish_events, session_events
from service.http.memory import clear_memory, delete_memory, get_memory, save_memory
from service.http.sessions import (
    add_messages,
    create_session,
    delete_session,
    get_messages,
    get_session,
    list_sessions,
)

log = logging.getLogger("service.http")


@get("/healthz", summary="Liveness", include_in_schema=False, opt={"operation": "healthz"})
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@get(
    "/readyz",
    summary="Readiness: the log configured, the read model migrated, every partition projected",
    include_in_schema=False,
    opt={"operation": "readyz"},
)
async def readyz(application: App) -> dict[str, Any]:
    """200 when every request can be served; otherwise 503 with the code of what is missing
    (``Application.readiness``), e.g. ``partitions_unowned`` with the list of ``partitions``."""
    return {"status": "ready", "checks": await application.readiness()}


@get("/metrics", include_in_schema=False, opt={"operation": "metrics"})
async def metrics(application: App) -> Response[bytes]:
    from service.metrics import CONTENT_TYPE_LATEST

    await application.refresh_metrics()
    return Response(application.metrics.render(), media_type=CONTENT_TYPE_LATEST)


@get("/openapi.json", include_in_schema=False, opt={"operation": "openapi_json"})
async def openapi_json(request: Request[Any, Any, Any]) -> dict[str, Any]:
    return openapi_document(request.app)


def create_app(
    application: Application | None = None,
    settings: ServiceSettings | None = None,
    gate: Gate | None = None,
) -> Litestar:
    """The Litestar app over ``application``; with none, the app opens one from ``settings`` (or the
    environment) when it starts and closes it when it stops. ``gate``: the keys and rate limit (default: from
    the settings)."""
    if application is None:
        settings = settings or ServiceSettings.from_env()
    effective = application.settings if application is not None else settings
    assert effective is not None
    gate = gate or Gate.from_settings(effective)

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        if application is not None:
            app.state["application"] = application
            yield
            return
        assert settings is not None
        opened = await Application.open(settings)
        log.info("sessions: %s", opened.mode)
        app.state["application"] = opened
        try:
            yield
        finally:
            await opened.close()

    state = State({"application": application, "gate": gate} if application is not None else {"gate": gate})
    app = Litestar(
        route_handlers=[
            create_session,
            get_session,
            delete_session,
            list_sessions,
            add_messages,
            get_messages,
            save_memory,
            get_memory,
            delete_memory,
            clear_memory,
            publish_events,
            audit_events,
            session_events,
            forget_user,
            healthz,
            readyz,
            metrics,
            openapi_json,
        ],
        dependencies=dependencies(),
        guards=[authorize],
        request_max_body_size=effective.max_body_bytes,
        exception_handlers=exception_handlers(),
        middleware=[observe],
        lifespan=[lifespan],
        state=state,
        openapi_config=OpenAPIConfig(
            title="Sessions",
            version="0.1.0",
            description=__doc__,
            path="/schema",
        ),
        debug=False,
        # The root logger is the command line's (service/cli); Litestar's own lines take its format.
        logging_config=LoggingConfig(
            configure_root_logger=False, formatters={"standard": {"format": LOG_FORMAT}}
        ),
    )
    check_declared(app)  # every route names its operation: none without a role
    return app

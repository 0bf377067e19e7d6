"""What the HTTP handlers get injected, by name: the application, the request's context (tenant, actor,
correlation id, from the headers) and the positions the client asks the read to wait for."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide

from service.app import Application
from service.consistency import Positions, merge_positions, parse_positions
from service.http.guard import principal_of
from service.http.shapes import POSITION_HEADER
from service.request import Context, context_of

__all__ = ["App", "At", "Ctx", "dependencies"]

# Injected into handlers by name (see ``dependencies``).
App = NamedDependency[Application]
Ctx = NamedDependency[Context]
At = NamedDependency[Positions]


def _context(request: Request[Any, Any, Any], state: State) -> Context:
    application: Application = state["application"]
    principal = principal_of(request)
    # The guard fixed the tenant (the key's, or with no keys the one asked for); public routes have none.
    tenant = principal.tenant if principal is not None else application.settings.default_tenant
    return context_of(request.headers, tenant)


def _positions(request: Request[Any, Any, Any]) -> Positions:
    at = parse_positions(request.headers.get(POSITION_HEADER.lower()))
    return merge_positions(at, parse_positions(request.query_params.get("min_position")))


def _application(state: State) -> Application:
    app: Application = state["application"]
    return app


def dependencies() -> dict[str, Provide]:
    return {
        "application": Provide(_application, sync_to_thread=False),
        "ctx": Provide(_context, sync_to_thread=False),
        "at": Provide(_positions, sync_to_thread=False),
    }

"""The HTTP side of the policy: one Litestar guard on every route, run after routing and before the body
is read, so a request without a valid key never gets its body parsed.

Each route names its operation in its ``opt`` (``opt={"operation": "create_session"}``); the guard looks it up
in ``service.operations`` and hands it to ``Gate.enter`` with the path and query inputs: the role (public,
reader, writer, admin; the audit trail without ``user_id`` or ``session_id`` is an admin's), acting as an
admin, the ids, memory key and page size. The OpenAPI pages under ``/schema`` (Litestar's own routes) are
public: they carry no tenant data. Any other route without a declared operation is refused when the app is
built (``undeclared_routes``).
"""

from __future__ import annotations

from typing import Any

from litestar import Litestar
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.routes import HTTPRoute

from service.errors import ConfigurationError
from service.operations import OPERATIONS, Operation
from service.security.gate import Gate
from service.security.keys import Principal

__all__ = ["OPERATION", "authorize", "memory_key", "operation_of", "principal_of", "undeclared_routes"]

OPERATION = "operation"  # the key of a route's ``opt`` that names its operation
_PRINCIPAL = "sessions_principal"


def _schema(path: str) -> bool:
    return path == "/schema" or path.startswith("/schema/")


def operation_of(handler: BaseRouteHandler) -> Operation | None:
    """The operation a route handler declares (None: it declares none). The OPTIONS handlers Litestar adds
    itself are the ``options`` operation."""
    if OPERATION not in handler.opt and getattr(handler, "http_methods", None) == {"OPTIONS"}:
        return OPERATIONS["options"]
    return OPERATIONS.get(str(handler.opt.get(OPERATION, "")))


def undeclared_routes(app: Litestar) -> list[str]:
    """``METHOD path`` of every route that declares no operation (the OpenAPI pages aside)."""
    out = []
    for route in app.routes:
        if isinstance(route, HTTPRoute) and not _schema(route.path):
            for handler in route.route_handlers:
                if operation_of(handler) is None:
                    out.append(f"{'/'.join(sorted(handler.http_methods))} {route.path}")
    return out


def check_declared(app: Litestar) -> None:
    if missing := undeclared_routes(app):
        raise ConfigurationError(
            f"routes without a declared operation (service.operations): {', '.join(missing)}",
            code="undeclared_operation",
        )


def principal_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal | None:
    """The principal the guard admitted the request as (None on a public route)."""
    found: Principal | None = connection.scope.get("state", {}).get(_PRINCIPAL)
    return found


def memory_key(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    """The memory key of a ``.../memory/{key}`` path: the rest of the path after ``/memory/``, exactly as sent
    (so keys may hold '/', as is or as %2F; a user id cannot, so the first ``/memory/`` is the one)."""
    return str(connection.scope["path"]).split("/memory/", 1)[1]


def _inputs(connection: ASGIConnection[Any, Any, Any, Any]) -> dict[str, Any]:
    inputs: dict[str, Any] = {k: v for k, v in connection.query_params.items() if isinstance(v, str)}
    raw = inputs.get("limit")
    inputs["limit"] = int(raw) if raw is not None and raw.strip().isdigit() else None
    inputs.update({k: str(v) for k, v in connection.path_params.items()})
    if "key" in connection.path_params:
        inputs["key"] = memory_key(connection)
    return inputs


async def authorize(connection: ASGIConnection[Any, Any, Any, Any], route_handler: BaseRouteHandler) -> None:
    """The guard: the route's operation through the gate (key, tenant, rate, role, input checks)."""
    op = operation_of(route_handler)
    if op is None:
        if _schema(str(connection.scope["path"])):
            return
        op = OPERATIONS["metrics"]  # undeclared (check_declared refuses such an app): an admin's, to be safe
    gate: Gate = connection.app.state["gate"]
    headers = connection.headers
    principal = gate.enter(
        op,
        _inputs(connection),
        authorization=headers.get("authorization"),
        tenant_asked=headers.get("x-tenant-id"),
        client=connection.client.host if connection.client else None,
        actor=headers.get("x-actor"),
    )
    if principal is not None:
        connection.scope.setdefault("state", {})[_PRINCIPAL] = principal

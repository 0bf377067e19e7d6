"""The HTTP side of ``service.security``: one Litestar guard on every route, run after routing and
before the body is read, so a request without a valid key never gets its body parsed.

Public (no key): ``/healthz``, ``/readyz``, ``/openapi.json`` and the OpenAPI pages under ``/schema`` (they
carry no tenant data). Admin: ``/metrics``, ``POST /v1/events``, ``POST /v1/users/{id}/forget``,
``GET /v1/events`` without ``user_id`` or ``session_id``. Other reads: reader; other writes: writer. The
guard also checks the ids in the path and query (``service.validation``) and the page size, so a malformed
request is refused before anything is appended.
"""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from service.security.gate import Gate
from service.security.keys import Principal, Role
from service.validation import check_id, check_key, check_limit

__all__ = ["PUBLIC_HANDLERS", "authorize", "principal_of", "required_role"]

PUBLIC_HANDLERS = frozenset({"healthz", "readyz", "openapi_json"})
_ADMIN_HANDLERS = frozenset({"metrics", "publish_events", "forget_user"})
_READS = frozenset({"GET", "HEAD", "OPTIONS"})
_PRINCIPAL = "sessions_principal"


def required_role(handler_name: str, method: str, path: str, query: Any) -> Role | None:
    """The role a request needs; None: public."""
    if handler_name in PUBLIC_HANDLERS or path == "/schema" or path.startswith("/schema/"):
        return None
    if handler_name in _ADMIN_HANDLERS:
        return "admin"
    if handler_name == "audit_events" and not (query.get("user_id") or query.get("session_id")):
        return "admin"
    return "reader" if method in _READS else "writer"


def principal_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal | None:
    """The principal the guard admitted the request as (None on a public route)."""
    found: Principal | None = connection.scope.get("state", {}).get(_PRINCIPAL)
    return found


def _check_input(connection: ASGIConnection[Any, Any, Any, Any]) -> None:
    params = connection.path_params
    for field in ("session_id", "user_id"):
        if field in params:
            check_id(str(params[field]), field)
        if (value := connection.query_params.get(field)) is not None:
            check_id(value, field)
    if "key" in params:
        check_key(str(connection.scope["path"]).split("/memory/", 1)[1])
    raw = connection.query_params.get("limit")
    if raw is not None and raw.strip().isdigit():
        check_limit(int(raw))


async def authorize(connection: ASGIConnection[Any, Any, Any, Any], route_handler: BaseRouteHandler) -> None:
    """The guard: admit the request (key, tenant, rate), check its role and its ids."""
    path = str(connection.scope.get("path_template") or connection.scope["path"])
    method = str(connection.scope.get("method", "GET"))
    role = required_role(route_handler.handler_name, method, path, connection.query_params)
    if role is None:
        return
    gate: Gate = connection.app.state["gate"]
    client = connection.client.host if connection.client else None
    headers = connection.headers
    principal = gate.admit(headers.get("authorization"), headers.get("x-tenant-id"), client)
    principal.require(role, f"{method} {path}")
    if (actor := connection.headers.get("x-actor")) and actor.partition(":")[0] == "admin":
        principal.require("admin", "acting as an admin (X-Actor admin:...)")
    connection.scope.setdefault("state", {})[_PRINCIPAL] = principal
    _check_input(connection)

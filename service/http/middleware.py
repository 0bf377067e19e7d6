"""ASGI middleware of the HTTP adapter: the correlation id (taken from the request or generated, seen by the
handlers, echoed back) and the request metrics (by route template, method and status)."""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from service.app import Application

__all__ = ["observe"]


def observe(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        headers = list(scope.get("headers", []))
        corr = next((v for k, v in headers if k == b"x-correlation-id"), None)
        if corr is None:
            corr = uuid.uuid4().hex.encode()
            headers.append((b"x-correlation-id", corr))
            scope["headers"] = headers
        status = 500
        start = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-correlation-id", corr)]
            await send(message)

        try:
            await app(scope, receive, send_wrapper)
        finally:
            application: Application | None = scope["app"].state.get("application")
            if application is not None:
                route = scope.get("path_template") or "unmatched"
                application.metrics.observe_request(
                    scope["method"], route, status, time.perf_counter() - start
                )

    return middleware

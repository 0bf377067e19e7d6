"""The HTTP/JSON adapter (Litestar): it translates requests into the core's operations and their results and
errors into JSON and problem+json, and nothing more.

* ``app``: ``create_app`` (the Litestar app: lifespan, guard, middleware, health, metrics, OpenAPI);
* ``sessions``, ``memory``, ``events``: the routes, one module per resource;
* ``guard``: the one guard every route passes (key, tenant, role, ids); ``dependencies``: what handlers get;
* ``shapes``: the JSON bodies; ``problems``: errors as problem+json; ``openapi``: the served document;
  ``middleware``: correlation id and request metrics;
* ``replies``: replies built from the server's types (a write's positions, a session's shape).

``create_app`` and ``PROBLEM_JSON`` load on first use (PEP 562): ``service.http.shapes`` is shared with the
SDK, which must not load Litestar.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from events import lazy

if TYPE_CHECKING:
    from service.http.app import create_app
    from service.http.problems import PROBLEM_JSON

__all__ = ["PROBLEM_JSON", "create_app"]

_HOME = {"PROBLEM_JSON": "problems", "create_app": "app"}


def __getattr__(name: str) -> Any:
    return lazy.load(__name__, _HOME, name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})

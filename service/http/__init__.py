"""The HTTP/JSON adapter (Litestar): it translates requests into the core's operations and their results and
errors into JSON and problem+json, and nothing more.

* ``app``: ``create_app`` (the Litestar app: lifespan, guard, middleware, health, metrics, OpenAPI);
* ``sessions``, ``memory``, ``events``: the routes, one module per resource;
* ``guard``: the one guard every route passes (key, tenant, role, ids); ``dependencies``: what handlers get;
* ``shapes``: the JSON bodies; ``problems``: errors as problem+json; ``openapi``: the served document;
  ``middleware``: correlation id and request metrics.
"""

from service.http.app import create_app
from service.http.problems import PROBLEM_JSON

__all__ = ["PROBLEM_JSON", "create_app"]

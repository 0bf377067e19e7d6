"""The OpenAPI document the HTTP adapter serves: Litestar's, with what it gets wrong about this API put right.

Found by schemathesis (``tests/fuzz/test_openapi.py``), each a place where the generated document and the
server disagreed:

- ``ge=0`` on a query parameter is lost (Litestar copies a bound only when it is truthy), so the document
  allowed negative ``limit``/``offset`` the server refuses;
- a ``{key:path}`` parameter is typed ``format: uri``, but a memory key is any string (it may hold '/');
- request bodies decoded with ``forbid_unknown_fields`` did not say ``additionalProperties: false``;
- a ``datetime`` query parameter also takes Unix seconds (msgspec's lax conversion), which it did not say.
"""

from __future__ import annotations

import copy
from typing import Any

import msgspec
from litestar import Litestar

from service.http import shapes as wire

__all__ = ["openapi_document"]

_CACHE_KEY = "_sessions_openapi_document"


def _non_negative_parameters(app: Litestar) -> set[str]:
    names: set[str] = set()
    for route in app.routes:
        for handler in getattr(route, "route_handlers", ()):
            for name, param in handler.parsed_fn_signature.parameters.items():
                kwarg = param.kwarg_definition
                if kwarg is not None and getattr(kwarg, "ge", None) == 0:
                    names.add(str(getattr(kwarg, "query", None) or name))
    return names


def _strict_bodies() -> set[str]:
    return {
        name
        for name in wire.__all__
        if isinstance(cls := getattr(wire, name), type)
        and issubclass(cls, msgspec.Struct)
        and cls.__struct_config__.forbid_unknown_fields
    }


def _fix(doc: dict[str, Any], non_negative: set[str], strict: set[str]) -> dict[str, Any]:
    for ops in doc.get("paths", {}).values():
        for op in ops.values():
            if not isinstance(op, dict):
                continue
            for param in op.get("parameters", []):
                schema = param.get("schema", {})
                if param.get("in") == "query" and param["name"] in non_negative and "minimum" not in schema:
                    schema["minimum"] = 0
                if param.get("in") == "path" and schema.get("format") == "uri":
                    del schema["format"]
                if param.get("in") == "query" and {"type": "string", "format": "date-time"} in schema.get(
                    "oneOf", []
                ):
                    schema["oneOf"].append({"type": "number", "description": "Unix seconds"})
    for name, schema in doc.get("components", {}).get("schemas", {}).items():
        if name in strict:
            schema["additionalProperties"] = False
    return doc


def openapi_document(app: Litestar) -> dict[str, Any]:
    """The corrected document, built once per app."""
    doc: dict[str, Any] | None = app.state.get(_CACHE_KEY)
    if doc is None:
        raw = copy.deepcopy(app.openapi_schema.to_schema())
        doc = _fix(raw, _non_negative_parameters(app), _strict_bodies())
        app.state[_CACHE_KEY] = doc
    return doc

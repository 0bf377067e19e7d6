"""The JSON Schema of every event type, committed as ``docs/events.schema.json``.

Regenerate after changing ``events/schema.py``::

    python -m events.jsonschema > docs/events.schema.json

``tests/events/test_schema.py`` fails while the committed file is stale.
"""

from __future__ import annotations

import inspect
import json
import re
import sys
from typing import Any

import msgspec

from .schema import AnyEvent

__all__ = ["generate", "schema"]


def _prose(text: str) -> str:
    """A docstring as one line per paragraph: msgspec's rendering of indentation changed between releases
    (0.23 dedents, earlier releases did not), and the committed schema must not depend on it."""
    paragraphs = re.split(r"\n\s*\n", inspect.cleandoc(text))
    return "\n\n".join(" ".join(p.split()) for p in paragraphs)


def _normalized(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            k: _prose(v) if k == "description" and isinstance(v, str) else _normalized(v)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_normalized(v) for v in node]
    return node


def schema() -> dict[str, Any]:
    out: dict[str, Any] = _normalized(msgspec.json.schema(AnyEvent))
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Session service events",
        "description": (
            "One JSON object per event, tagged by `type`. `version` and `recorded_at` are assigned by the "
            "log "
            "and must be left out when publishing. See docs/events.md."
        ),
        **out,
    }


def generate() -> str:
    return json.dumps(schema(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    sys.stdout.write(generate())

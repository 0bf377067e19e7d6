"""The JSON Schema of every event type, committed as ``docs/events.schema.json``.

Regenerate after changing ``events/schema.py``::

    python -m events.jsonschema > docs/events.schema.json

``tests/events/test_schema.py`` fails while the committed file is stale.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import msgspec

from .schema import AnyEvent

__all__ = ["generate", "schema"]


def schema() -> dict[str, Any]:
    out: dict[str, Any] = msgspec.json.schema(AnyEvent)
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

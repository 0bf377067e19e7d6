"""Driver failures are translated once, where the driver is used (issue 9, Build 3): ``events.driver`` for
redis-py and ``projections.driver`` for psycopg. Above them (``service/``, ``consumers/``,
``genai_platform/``) no module imports the drivers' exceptions, or names a driver in an ``except`` clause."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ABOVE = ("service", "consumers", "genai_platform")
DRIVERS = ("redis", "psycopg", "psycopg_pool")


def _is_driver(module: str) -> bool:
    return module.split(".")[0] in DRIVERS


def _root_name(node: ast.expr) -> str | None:
    while isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def violations(source: str, filename: str) -> list[str]:
    """Imports of a driver's exceptions, and ``except`` clauses naming a driver's module or exception."""
    tree = ast.parse(source, filename)
    found: list[str] = []
    driver_names: set[str] = set()  # local names bound to a driver module or to something imported from one
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _is_driver(alias.name):
                    driver_names.add(alias.asname or alias.name.split(".")[0])
                    if "exceptions" in alias.name or "errors" in alias.name:
                        found.append(f"{filename}:{node.lineno}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.module and _is_driver(node.module):
            for alias in node.names:
                driver_names.add(alias.asname or alias.name)
                what = f"{node.module}.{alias.name}"
                if (
                    "exceptions" in what
                    or "errors" in what
                    or alias.name.endswith(("Error", "Timeout", "Closed"))
                ):
                    found.append(f"{filename}:{node.lineno}: from {node.module} import {alias.name}")
    for node in ast.walk(tree):
        if isinstance(node, ast.ExceptHandler) and node.type is not None:
            kinds = node.type.elts if isinstance(node.type, ast.Tuple) else [node.type]
            for kind in kinds:
                name = _root_name(kind)
                if name in driver_names:
                    found.append(f"{filename}:{node.lineno}: except {ast.unparse(kind)}")
    return found


def scan(root: Path) -> list[str]:
    found: list[str] = []
    for package in ABOVE:
        for path in sorted((root / package).rglob("*.py")):
            found += violations(path.read_text(), str(path.relative_to(root)))
    return found


def test_nothing_above_the_drivers_catches_their_exceptions() -> None:
    assert scan(ROOT) == []


def test_the_scan_finds_what_it_forbids() -> None:
    bad = """
import psycopg
import redis.exceptions
from redis.exceptions import ConnectionError as RedisConnectionError
from psycopg_pool import PoolTimeout
from psycopg import errors as pg_errors
from redis import asyncio as aioredis

try:
    pass
except (RedisConnectionError, psycopg.OperationalError, OSError):
    pass
except aioredis.RedisError:
    pass
"""
    found = violations(bad, "bad.py")
    assert [f.split(": ", 1)[1] for f in found] == [
        "import redis.exceptions",
        "from redis.exceptions import ConnectionError",
        "from psycopg_pool import PoolTimeout",
        "from psycopg import errors",
        "except RedisConnectionError",
        "except psycopg.OperationalError",
        "except aioredis.RedisError",
    ]
    # Using a driver's client object is fine (consumers/leases.py is handed one); catching is not.
    assert violations("import redis.asyncio as aioredis\nclient: aioredis.Redis\n", "ok.py") == []

"""Package exports that load on first use (PEP 562), so that importing one light module of a package (say
``events.errors``) does not run the package's heavy imports (``events.log`` and Redis).

A package lists where each public name is defined and delegates its module ``__getattr__`` here::

    _HOME = {"EventLog": "log", "SessionDeletedEvent": "schema:SessionDeleted"}

    def __getattr__(name: str) -> Any:
        return lazy.load(__name__, _HOME, name)

and imports the same names under ``if TYPE_CHECKING:`` for type checkers and readers.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping
from typing import Any

__all__ = ["load"]


def load(package: str, home: Mapping[str, str], name: str) -> Any:
    """The public ``name`` of ``package``, imported from its ``home`` (``"module"`` or ``"module:attr"``)."""
    where = home.get(name)
    if where is None:
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    module, _, attribute = where.partition(":")
    value = getattr(importlib.import_module(f"{package}.{module}"), attribute or name)
    setattr(sys.modules[package], name, value)  # once loaded, a plain attribute
    return value

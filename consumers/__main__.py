"""``python -m consumers <command>``: the projector commands without the rest of the ``sessions`` CLI."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())

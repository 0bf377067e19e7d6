"""``python -m consumers <command>``: an alias of the one ``sessions`` command line (``service/cli/``), kept
for the process-level tests and deployments that call it. (The only import from ``consumers`` up into
``service``: the entry point is the service's, and this module is never imported by the package.)"""

from __future__ import annotations

from service.cli import main

if __name__ == "__main__":
    main()

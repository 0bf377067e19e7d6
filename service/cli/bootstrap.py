"""What every ``sessions`` command runs inside: settings from the environment, logging, and one mapping of
errors to a line on stderr and an exit code (the table is in ``service/cli/__init__.py``)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import TextIO

from consumers.errors import CommandError
from events.errors import ConfigurationError, InvalidEvent, SessionsError
from service.errors import BadRequest
from service.settings import LOG_FORMAT, ServiceSettings

__all__ = [
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "Handler",
    "UsageError",
    "execute",
    "exit_code_of",
    "report",
    "setup_logging",
]

EXIT_OK = 0
EXIT_FAILURE = 1  # the command ran and failed
EXIT_USAGE = 2  # bad arguments or settings: nothing was done
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), as a shell reports it

# Arguments -> exit code, or a coroutine of it (run in a fresh event loop).
Handler = Callable[[argparse.Namespace, ServiceSettings], "int | Awaitable[int]"]

# The errors that mean "asked wrongly" rather than "failed while doing it".
_USAGE_ERRORS: tuple[type[SessionsError], ...] = (CommandError, BadRequest, InvalidEvent, ConfigurationError)

log = logging.getLogger("service.cli")


class UsageError(CommandError):
    """The command line itself is wrong (argparse's complaints)."""

    code = "usage_error"


def setup_logging(level: str) -> None:
    """Once per process: every logger to stderr in ``LOG_FORMAT`` (uvicorn and Litestar use it too)."""
    logging.basicConfig(level=level.upper(), stream=sys.stderr, format=LOG_FORMAT)


def exit_code_of(error: SessionsError) -> int:
    return EXIT_USAGE if isinstance(error, _USAGE_ERRORS) else EXIT_FAILURE


def report(code: str, message: str, out: TextIO | None = None) -> None:
    """The one error line: ``sessions: <code>: <message>``, a multi-line driver message folded into it."""
    text = " ".join(message.split())
    print(f"sessions: {code}: {text}", file=out or sys.stderr, flush=True)


def execute(handler: Handler, args: argparse.Namespace) -> int:
    """Run one command: read the settings, set logging up, run, map what it raises to an exit code."""
    try:
        settings = ServiceSettings.from_env()
        setup_logging(settings.log_level)
        result = handler(args, settings)
        if asyncio.iscoroutine(result):
            result = asyncio.run(result)
        assert isinstance(result, int), f"{handler!r} returned {result!r}"
        return result
    except KeyboardInterrupt:
        report("interrupted", "stopped by Ctrl-C")
        return EXIT_INTERRUPTED
    except SessionsError as e:
        report(e.code, e.message)
        return exit_code_of(e)
    except Exception as e:  # a bug or a failure nothing translated: still one line, the trace at debug level
        log.debug("unexpected error", exc_info=True)
        report("internal_error", f"unexpected {type(e).__name__}: {e}")
        return EXIT_FAILURE

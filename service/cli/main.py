"""The parser of every ``sessions`` command, and the entry point."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from consumers.cli import add_commands as add_consumer_commands

from .admin import add_admin_commands
from .bootstrap import EXIT_USAGE, UsageError, execute, exit_code_of, report
from .serve import add_serve_command

__all__ = ["build_parser", "main", "run"]


class _Parser(argparse.ArgumentParser):
    """argparse, with its complaints raised as ``UsageError`` so they print in the one error format."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sessions", description="Event-sourced session service for AI agents.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    add_serve_command(sub)
    add_admin_commands(sub)
    add_consumer_commands(sub)
    return parser


def run(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), run the command, return its exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as e:
        report(e.code, e.message)
        return exit_code_of(e)
    if not getattr(args, "handler", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    return execute(args.handler, args)


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """The ``sessions`` executable."""
    sys.exit(run(argv))

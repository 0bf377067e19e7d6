"""The ``sessions`` command: ``sessions serve`` runs the API; the projector commands (``sessions project``,
...) come from ``consumers.cli`` when that package provides them.

With no configuration ``sessions serve`` is self-contained (embedded): an in-process fakeredis log, the
in-memory read model and an in-process projector, bound to 127.0.0.1. Nothing it stores survives a restart.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import sys
from collections.abc import Sequence
from typing import Any

from events.errors import SessionsError

from .settings import ServiceSettings

__all__ = ["build_parser", "main", "serve"]

log = logging.getLogger("service.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sessions", description="Event-sourced session service for AI agents."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve_p = sub.add_parser("serve", help="run the HTTP API and the gRPC API beside it")
    serve_p.add_argument("--host", help="bind address (SESSIONS_HTTP_HOST, default 127.0.0.1)")
    serve_p.add_argument("--port", type=int, help="HTTP port (SESSIONS_HTTP_PORT, default 8052)")
    serve_p.add_argument(
        "--no-projector", action="store_true", help="do not project in this process (run `sessions project`)"
    )
    serve_p.set_defaults(handler=_serve_command)
    try:
        from consumers import cli as consumers_cli
    except ImportError:
        consumers_cli = None  # type: ignore[assignment]
    if consumers_cli is not None and hasattr(consumers_cli, "add_commands"):
        consumers_cli.add_commands(sub)
    return parser


async def serve(settings: ServiceSettings) -> None:
    """Run the API until SIGINT/SIGTERM."""
    import uvicorn

    from .app import Application
    from .http import create_app

    application = await Application.open(settings)
    log.info("sessions: %s", application.mode)
    if settings.embedded:
        log.warning(
            "sessions: running EMBEDDED on %s:%d: fakeredis + in-memory read model; nothing survives a "
            "restart. Set SESSION_STORAGE=postgres, DB_CONNECTION_STRING and REDIS_URL for the real servers.",
            settings.http_host,
            settings.http_port,
        )
    app = create_app(application)
    config = uvicorn.Config(
        app, host=settings.http_host, port=settings.http_port, log_level=settings.log_level, access_log=False
    )
    server = uvicorn.Server(config)
    # The gRPC server (wire-compatible with the seed's SessionService, service/grpc.py) runs beside HTTP on
    # settings.grpc_port, over the same `application`.
    grpc_server: Any = None
    try:
        from .grpc import start_grpc_server

        grpc_server = await start_grpc_server(application, settings)
        await server.serve()
    finally:
        if grpc_server is not None:
            await grpc_server.stop(grace=5)
        await application.close()


def _serve_command(args: argparse.Namespace) -> int:
    settings = ServiceSettings.from_env()
    changes: dict[str, Any] = {}
    if args.host:
        changes["http_host"] = args.host
    if args.port:
        changes["http_port"] = args.port
    if args.no_projector:
        changes["projector"] = False
    settings = dataclasses.replace(settings, **changes)
    if settings.embedded and not settings.projector:
        log.warning("sessions: the embedded log lives in this process, so its projector runs here anyway")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(settings))
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    # Every subcommand (ours and consumers.cli's) sets ``handler``: arguments -> exit code.
    if not getattr(args, "handler", None):
        parser.print_help()
        sys.exit(2)
    try:
        code = args.handler(args)
        if asyncio.iscoroutine(code):
            code = asyncio.run(code)
    except SessionsError as e:
        print(f"sessions: {e.code}: {e.message}", file=sys.stderr)
        sys.exit(1)
    sys.exit(code or 0)

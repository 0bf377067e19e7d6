"""The ``sessions`` command: ``sessions serve`` runs the API; ``sessions keys create|list|revoke`` manage the
API keys (``service.security``); ``sessions forget-user --tenant T USER`` erases a user (``service.erasure``);
the projector commands (``sessions project``,
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
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from events.errors import ConfigurationError, SessionsError
from service.settings import ServiceSettings

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
    serve_p.add_argument(
        "--insecure-bind",
        action="store_true",
        help="allow a non-loopback bind with no API keys configured (SESSIONS_INSECURE_BIND)",
    )
    serve_p.set_defaults(handler=_serve_command)
    _add_key_commands(sub)
    forget_p = sub.add_parser(
        "forget-user",
        help="erase a user: delete their sessions, destroy their data key, remove their rows",
    )
    forget_p.add_argument("user_id", metavar="USER")
    forget_p.add_argument("--tenant", help="the user's tenant (default: SESSIONS_DEFAULT_TENANT)")
    forget_p.add_argument(
        "--rewrite-aof", action="store_true", help="then ask Redis to rewrite its AOF (BGREWRITEAOF)"
    )
    forget_p.set_defaults(handler=_forget_user)
    try:
        from consumers import cli as consumers_cli
    except ImportError:
        consumers_cli = None  # type: ignore[assignment]
    if consumers_cli is not None and hasattr(consumers_cli, "add_commands"):
        consumers_cli.add_commands(sub)
    return parser


def _add_key_commands(sub: Any) -> None:
    keys_p = sub.add_parser("keys", help="API keys: create, list, revoke (SESSIONS_API_KEYS_FILE)")
    keys_p.add_argument("--file", help="the keys file (default: SESSIONS_API_KEYS_FILE)")
    keys_sub = keys_p.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    create_p = keys_sub.add_parser("create", help="create a key; prints it once (only its hash is stored)")
    create_p.add_argument("--tenant", required=True)
    create_p.add_argument("--role", required=True, choices=["reader", "writer", "admin"])
    create_p.add_argument("--name", help="a label shown by `keys list`")
    create_p.set_defaults(handler=_keys_create)
    keys_sub.add_parser("list", help="the keys (never a secret or a hash)").set_defaults(handler=_keys_list)
    revoke_p = keys_sub.add_parser("revoke", help="revoke a key by id (a running server notices within ~1 s)")
    revoke_p.add_argument("id")
    revoke_p.set_defaults(handler=_keys_revoke)


def _keys_file(args: argparse.Namespace) -> Path:
    path = args.file or os.environ.get("SESSIONS_API_KEYS_FILE")
    if not path:
        raise ConfigurationError(
            "name the keys file: --file PATH or SESSIONS_API_KEYS_FILE", code="keys_file_required"
        )
    return Path(path)


def _keys_create(args: argparse.Namespace) -> int:
    from service.security.keys import create_key

    key, full = create_key(_keys_file(args), args.tenant, args.role, args.name)
    print(full)
    print(
        f"key {key.id}: tenant {key.tenant}, role {key.role}; store it now, it is not shown again",
        file=sys.stderr,
    )
    return 0


def _keys_list(args: argparse.Namespace) -> int:
    from service.security.keys import load_keys_file

    for k in load_keys_file(_keys_file(args)):
        state = f"revoked {k.revoked_at}" if k.revoked_at else "active"
        print(f"{k.id}  {k.tenant}  {k.role}  {state}  {k.created_at or '-'}  {k.name or ''}".rstrip())
    return 0


def _keys_revoke(args: argparse.Namespace) -> int:
    from service.security.keys import revoke_key

    key = revoke_key(_keys_file(args), args.id)
    print(f"revoked {key.id} ({key.tenant}, {key.role})")
    return 0


async def serve(settings: ServiceSettings) -> None:
    """Run the API until SIGINT/SIGTERM."""
    import uvicorn

    from service.app import Application
    from service.grpc.servicer import grpc_host
    from service.http.app import create_app
    from service.security.bind import check_bind
    from service.security.gate import Gate

    gate = Gate.from_settings(settings)
    check_bind([settings.http_host, grpc_host(settings)], not gate.open, settings.insecure_bind)
    if gate.open:
        log.warning(
            "sessions: NO API KEYS configured: the service is OPEN (no authentication, one tenant per "
            "X-Tenant-Id, default %r)%s. Set SESSIONS_API_KEYS_FILE (`sessions keys create`) to need keys.",
            settings.default_tenant,
            "" if settings.insecure_bind else ", so it binds loopback only",
        )
    else:
        log.info("sessions: API keys required (%d in force)", len(gate.store.keys()))
    application = await Application.open(settings)
    log.info("sessions: %s", application.mode)
    if settings.embedded:
        log.warning(
            "sessions: running EMBEDDED on %s:%d: fakeredis + in-memory read model; nothing survives a "
            "restart. Set SESSION_STORAGE=postgres, DB_CONNECTION_STRING and REDIS_URL for the real servers.",
            settings.http_host,
            settings.http_port,
        )
    app = create_app(application, gate=gate)
    config = uvicorn.Config(
        app, host=settings.http_host, port=settings.http_port, log_level=settings.log_level, access_log=False
    )
    server = uvicorn.Server(config)
    # The gRPC server (wire-compatible with the seed's SessionService, service/grpc.py) runs beside HTTP on
    # settings.grpc_port, over the same `application`.
    grpc_server: Any = None
    try:
        from service.grpc.servicer import start_grpc_server

        grpc_server = await start_grpc_server(application, settings, gate)
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
    if args.insecure_bind:
        changes["insecure_bind"] = True
    settings = dataclasses.replace(settings, **changes)
    if settings.embedded and not settings.projector:
        log.warning("sessions: the embedded log lives in this process, so its projector runs here anyway")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(settings))
    return 0


async def _forget_user(args: argparse.Namespace) -> int:
    from events.schema import Actor
    from service.app import Application
    from service.request import Context

    # The API's projectors apply the erasure; this process only appends and waits for them.
    settings = dataclasses.replace(ServiceSettings.from_env(), projector=False)
    if settings.embedded:
        print(
            "sessions: the embedded service keeps its data in its own process: forget the user through it"
            " (POST /v1/users/{user_id}/forget), or set REDIS_URL and SESSION_STORAGE",
            file=sys.stderr,
        )
        return 2
    ctx = Context(tenant=args.tenant or settings.default_tenant, actor=Actor(kind="admin", id="cli"))
    async with await Application.open(settings) as app:
        result = await app.forget_user(ctx, args.user_id, rewrite_aof=args.rewrite_aof)
    print(
        f"forgotten: {len(result.sessions_deleted)} sessions deleted, data key destroyed:"
        f" {'yes' if result.key_destroyed else 'no (there was none)'}, user.forgotten.v1 at"
        f" {result.result.partition}:{result.result.position}"
    )
    if args.rewrite_aof:
        print(f"AOF rewrite: {result.aof_rewrite}")
    else:
        print("note: Redis' append-only file keeps the destroyed key until it is rewritten (BGREWRITEAOF)")
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

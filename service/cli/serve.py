"""``sessions serve``: the HTTP API, and the gRPC API beside it, over one application core.

With no configuration it is self-contained (embedded): an in-process fakeredis log, the in-memory read model
and an in-process projector, bound to 127.0.0.1. Nothing it stores survives a restart.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import socket
import threading
from typing import Any

from events.errors import ConfigurationError
from service.settings import ServiceSettings

__all__ = ["add_serve_command", "listen", "serve"]

log = logging.getLogger("service.cli")


def port_number(text: str) -> int:
    """An argparse type: a TCP port, 1 to 65535."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 1 to 65535, not {port}")
    return port


def add_serve_command(sub: Any) -> None:
    serve_p = sub.add_parser("serve", help="run the HTTP API and the gRPC API beside it")
    serve_p.add_argument("--host", help="bind address (SESSIONS_HTTP_HOST, default 127.0.0.1)")
    serve_p.add_argument("--port", type=port_number, help="HTTP port (SESSIONS_HTTP_PORT, default 8052)")
    serve_p.add_argument(
        "--no-projector", action="store_true", help="do not project in this process (run `sessions project`)"
    )
    serve_p.add_argument(
        "--insecure-bind",
        action="store_true",
        help="allow a non-loopback bind with no API keys configured (SESSIONS_INSECURE_BIND)",
    )
    serve_p.set_defaults(handler=_serve_command)


def listen(host: str, port: int) -> socket.socket:
    """The HTTP listening socket, bound here (as uvicorn would) so that a taken or foreign address is one
    clear error before anything else opens, not uvicorn's own message after the application started."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP, not socket.create_server's 0: accepted sockets inherit it, and asyncio sets
    # TCP_NODELAY only on sockets whose proto says TCP. Without it Nagle meets the client's delayed ACK and
    # every response waits about 40 ms (bench api: 23 req/s instead of hundreds).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
        return sock
    except OSError as e:
        sock.close()
        reason = os.strerror(e.errno) if e.errno else str(e)
        raise ConfigurationError(
            f"HTTP cannot listen on {host}:{port}: {reason} (in use, or not an address of this "
            "host); set --port / SESSIONS_HTTP_PORT or --host / SESSIONS_HTTP_HOST",
            code="http_address_unavailable",
        ) from e


async def serve(settings: ServiceSettings) -> None:
    """Run the API until SIGINT/SIGTERM."""
    import uvicorn

    from service.app import Application
    from service.grpc.servicer import grpc_host, start_grpc_server
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
    sock = listen(settings.http_host, settings.http_port)
    try:
        application = await Application.open(settings)
    except BaseException:
        sock.close()
        raise
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
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_level=settings.log_level,
        log_config=None,  # its lines go to the root logger, in the one format (service/cli/bootstrap.py)
        access_log=False,
        # h11, named: with httptools installed (bench/_raw.py uses it) uvicorn would pick it, and httptools
        # answers a header holding a control character with its own text/plain 400, not our problem+json.
        # Moving the served path to httptools is issue 10's, with that answer decided there.
        http="h11",
    )
    server = uvicorn.Server(config)
    # The gRPC server (wire-compatible with the seed's SessionService, service/grpc/) runs beside HTTP on
    # settings.grpc_port, over the same `application`.
    grpc_server: Any = None
    try:
        grpc_server = await start_grpc_server(application, settings, gate)
        log.info("sessions: HTTP API on %s:%d", settings.http_host, sock.getsockname()[1])
        await server.serve(sockets=[sock])
    finally:
        sock.close()
        if grpc_server is not None:
            await grpc_server.stop(grace=5)
        await application.close()


def _serve_command(args: argparse.Namespace, settings: ServiceSettings) -> int:
    changes: dict[str, Any] = {}
    if args.host:
        changes["http_host"] = args.host
    if args.port is not None:
        changes["http_port"] = args.port
    if args.no_projector:
        changes["projector"] = False
    if args.insecure_bind:
        changes["insecure_bind"] = True
    settings = dataclasses.replace(settings, **changes)
    if settings.embedded and not settings.projector:
        log.warning("sessions: the embedded log lives in this process, so its projector runs here anyway")
    # SIGTERM stops it as Ctrl-C does, also while it starts (uvicorn handles both once it runs, then raises
    # the signal again): a stop asked for is a clean exit, 0, as for `project` and `trim --every`.
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler) if main_thread else None
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(settings))
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
    return 0

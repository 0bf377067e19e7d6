"""``sessions serve`` starts the gRPC SessionService beside HTTP (embedded, on free loopback ports)."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time

import httpx

from genai_platform import GenAIPlatform, PlatformError


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _use(target: str) -> tuple[str, dict[str, object]]:
    deadline = time.monotonic() + 60
    with GenAIPlatform(target, timeout=5) as platform:
        while True:
            try:
                s = platform.sessions.get_or_create("via-grpc")
                break
            except PlatformError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        platform.sessions.save_memory("via-grpc", "k", {"v": 1})
        return s.session_id, platform.sessions.get_memory("via-grpc")


async def test_sessions_serve_runs_grpc_beside_http_over_one_core() -> None:
    http_port, grpc_port = _free_port(), _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "SESSION_STORAGE")},
        "SESSIONS_HTTP_PORT": str(http_port),
        "SESSIONS_PORT": str(grpc_port),
        "SESSIONS_HTTP_HOST": "127.0.0.1",
        "SESSIONS_LOG_LEVEL": "warning",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from service.cli import main; main()",
        "serve",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        session_id, memory = await asyncio.to_thread(_use, f"127.0.0.1:{grpc_port}")
        assert memory == {"k": {"v": 1}}
        # The same application answers over HTTP: what gRPC wrote is there.
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}") as http:
            reply = await http.get(f"/v1/sessions/{session_id}")
            assert reply.status_code == 200, reply.text
            assert reply.json()["user_id"] == "via-grpc"
    finally:
        proc.terminate()
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    assert b"Traceback" not in err, err.decode()


async def test_a_taken_grpc_port_stops_serve_with_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env = {
            **{k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "SESSION_STORAGE")},
            "SESSIONS_HTTP_PORT": str(_free_port()),
            "SESSIONS_PORT": str(taken.getsockname()[1]),
            "SESSIONS_HTTP_HOST": "127.0.0.1",
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "from service.cli import main; main()",
            "serve",
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2  # a setting that cannot be used (service/cli: exit codes)
    assert b"sessions: grpc_address_unavailable: gRPC cannot listen on 127.0.0.1:" in err
    assert b"Traceback" not in err

"""``python -m bench api_grpc``: requests/s, p50 and p99 latency of the gRPC API at 1 and 16 clients.

Three operations, each for ``--duration`` seconds per concurrency level:

* append a turn: ``AddMessages`` with a user and an assistant message (each client its own session);
* read the latest 20 messages of a 1,000-message session: ``GetMessages(limit=20, order="desc")``;
* the same window as the original SDK asks for it: ``GetMessages(limit=20, strategy="last_n")`` (oldest
  first, never splitting a tool call from its results).

Every read includes the read-your-writes wait. The server is ``sessions serve`` in a subprocess on loopback
ports, on the real servers by default (Redis at ``--redis-url``, PostgreSQL at ``--dsn`` in a fresh schema,
in-process projector), under a fresh key prefix; what it wrote is removed afterwards. Each client has its own
channel; the clients run in this process, sharing the machine's cores with the server, so the figures are a
floor, not a ceiling.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import psycopg
import redis

from proto import sessions_pb2 as pb
from proto import sessions_pb2_grpc as pb_grpc

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")
TURN = [
    pb.Message(role="user", content="Can you check the weather in Lisbon for Saturday? " * 2),
    pb.Message(role="assistant", content="It will be sunny, around 21 °C. " * 3),
]
Op = Callable[[Any, int], Awaitable[Any]]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def _wait_ready(target: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.SessionServiceStub(channel)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"sessions serve exited with {proc.returncode}")
            try:
                await stub.ListSessions(pb.ListSessionsRequest(user_id="bench-probe"), timeout=2)
                return
            except grpc.aio.AioRpcError:
                await asyncio.sleep(0.2)
    raise SystemExit("sessions serve did not become ready")


async def _run(stubs: list[Any], clients: int, duration: float, op: Op) -> tuple[int, float, list[float]]:
    latencies: list[float] = []
    errors = 0
    stop = time.monotonic() + duration

    async def worker(i: int) -> None:
        nonlocal errors
        while time.monotonic() < stop:
            t = time.perf_counter()
            try:
                await op(stubs[i], i)
            except grpc.aio.AioRpcError:
                errors += 1
            latencies.append(time.perf_counter() - t)

    start = time.monotonic()
    await asyncio.gather(*(worker(i) for i in range(clients)))
    elapsed = time.monotonic() - start
    if errors:
        print(f"  warning: {errors} calls failed", file=sys.stderr)
    return len(latencies), elapsed, latencies


async def bench(
    target: str, levels: list[int], duration: float
) -> list[tuple[str, int, float, float, float]]:
    channels = [grpc.aio.insecure_channel(target) for _ in range(max(levels))]
    stubs = [pb_grpc.SessionServiceStub(c) for c in channels]
    try:
        first = stubs[0]
        await first.GetOrCreateSession(
            pb.GetOrCreateSessionRequest(user_id="bench-reader", session_id="bench-read")
        )
        batch = [
            pb.Message(role="user" if i % 2 == 0 else "assistant", content=f"message {i}") for i in range(100)
        ]
        for _ in range(10):
            await first.AddMessages(pb.AddMessagesRequest(session_id="bench-read", messages=batch))
        writers = []
        for i in range(max(levels)):
            s = await first.GetOrCreateSession(pb.GetOrCreateSessionRequest(user_id=f"bench-writer-{i}"))
            writers.append(s.session_id)
        total = (await first.GetMessages(pb.GetMessagesRequest(session_id="bench-read", limit=1))).total_count
        assert total == 1000, total

        async def append(stub: Any, i: int) -> Any:
            return await stub.AddMessages(pb.AddMessagesRequest(session_id=writers[i], messages=TURN))

        async def latest(stub: Any, i: int) -> Any:
            return await stub.GetMessages(
                pb.GetMessagesRequest(session_id="bench-read", limit=20, order="desc")
            )

        async def last_n(stub: Any, i: int) -> Any:
            return await stub.GetMessages(
                pb.GetMessagesRequest(session_id="bench-read", limit=20, strategy="last_n")
            )

        rows = []
        ops: list[tuple[str, Op]] = [
            ("append a turn", append),
            ("latest 20 of 1,000 (desc)", latest),
            ("latest 20 of 1,000 (last_n)", last_n),
        ]
        for name, op in ops:
            for n in levels:
                await _run(stubs, n, min(1.0, duration / 4), op)  # warm-up
                count, elapsed, lat = await _run(stubs, n, duration, op)
                p50, p99 = _pct(lat, 0.5), _pct(lat, 0.99)
                rows.append((name, n, count / elapsed, p50, p99))
                print(
                    f"  {name:<28} clients={n:<3} {count / elapsed:8.0f} req/s"
                    f"  p50 {p50:6.2f} ms  p99 {p99:6.2f} ms",
                    flush=True,
                )
        return rows
    finally:
        for c in channels:
            await c.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench api_grpc", description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per operation and level")
    parser.add_argument("--clients", default="1,16", help="concurrency levels, comma-separated")
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", DEFAULT_REDIS))
    parser.add_argument("--dsn", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DSN))
    parser.add_argument("--storage", choices=["postgres", "memory"], default="postgres")
    args = parser.parse_args(argv)
    for url in (args.redis_url, args.dsn):
        host = url.split("//", 1)[-1].split("@")[-1].split("/")[0].rsplit(":", 1)[0]
        if host not in LOOPBACK:
            raise SystemExit("benchmarks only target loopback servers")
    levels = [int(x) for x in args.clients.split(",")]

    tag = uuid.uuid4().hex[:10]
    prefix, schema, grpc_port = f"bench-grpc-{tag}", f"bench_grpc_{tag}", _free_port()
    env = {
        **os.environ,
        "REDIS_URL": args.redis_url,
        "SESSIONS_REDIS_PREFIX": prefix,
        "SESSIONS_HTTP_PORT": str(_free_port()),
        "SESSIONS_PORT": str(grpc_port),
        "SESSIONS_HTTP_HOST": "127.0.0.1",
        "SESSIONS_GRPC_HOST": "127.0.0.1",
        "SESSIONS_LOG_LEVEL": "warning",
        "SESSION_STORAGE": args.storage,
    }
    if args.storage == "postgres":
        with psycopg.connect(args.dsn, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        env["DB_CONNECTION_STRING"] = args.dsn
        env["SESSIONS_DB_SCHEMA"] = schema
    proc = subprocess.Popen(
        [sys.executable, "-c", "from service.cli import main; main()", "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    target = f"127.0.0.1:{grpc_port}"
    print(
        f"bench api_grpc: sessions serve, gRPC on {target} ({args.storage} read model, "
        f"Redis {args.redis_url}, {args.duration:g} s per level)"
    )
    try:
        asyncio.run(_wait_ready(target, proc))
        asyncio.run(bench(target, levels, args.duration))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        client = redis.Redis.from_url(args.redis_url)
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        for i in range(0, len(keys), 500):
            client.delete(*keys[i : i + 500])
        client.close()
        if args.storage == "postgres":
            with psycopg.connect(args.dsn, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


if __name__ == "__main__":
    main()

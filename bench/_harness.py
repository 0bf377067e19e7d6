"""What the API benchmarks share: a served stack in a subprocess, closed-loop clients, percentiles.

``served_stack`` runs ``sessions serve`` on loopback ports under a fresh Redis key prefix (and, for the
PostgreSQL read model, a fresh schema) and removes everything it wrote afterwards. ``measure`` runs N clients
in a closed loop for a duration and returns the count, the elapsed time and every latency.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
import urllib.parse
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
import redis

__all__ = [
    "Row",
    "Stack",
    "add_stack_arguments",
    "compare",
    "free_port",
    "level",
    "measure",
    "pct",
    "served_stack",
    "stop_and_clean",
    "wait_ready",
]

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    """The q-quantile of latencies in seconds, in milliseconds."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def add_stack_arguments(parser: argparse.ArgumentParser, duration: float) -> None:
    parser.add_argument("--duration", type=float, default=duration, help="seconds per operation and level")
    parser.add_argument("--clients", default="1,16", help="concurrency levels, comma-separated")
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", DEFAULT_REDIS))
    parser.add_argument("--dsn", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DSN))
    parser.add_argument("--storage", choices=["postgres", "memory"], default="postgres")
    parser.add_argument("--no-raw", action="store_true", help="skip the raw limit (bench._raw)")


def _host(url: str) -> str:
    return urllib.parse.urlsplit(url).hostname or ""


@dataclass(frozen=True)
class Stack:
    proc: subprocess.Popen[bytes]
    http_port: int
    grpc_port: int

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"


@contextmanager
def served_stack(args: argparse.Namespace, name: str) -> Iterator[Stack]:
    """``sessions serve`` (HTTP and gRPC) on the servers ``args`` name; loopback only; cleaned up after."""
    for url in (args.redis_url, args.dsn):
        if _host(url) not in LOOPBACK:
            raise SystemExit("benchmarks only target loopback servers")
    tag = uuid.uuid4().hex[:10]
    prefix, schema = f"bench-{name}-{tag}", f"bench_{name}_{tag}"
    http_port, grpc_port = free_port(), free_port()
    env = {
        **os.environ,
        "REDIS_URL": args.redis_url,
        "SESSIONS_REDIS_PREFIX": prefix,
        "SESSIONS_HTTP_PORT": str(http_port),
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
    try:
        yield Stack(proc, http_port, grpc_port)
    finally:
        stop_and_clean(proc, args.redis_url, prefix, args.dsn if args.storage == "postgres" else None, schema)


def stop_and_clean(
    proc: subprocess.Popen[bytes], redis_url: str, prefix: str, dsn: str | None, schema: str
) -> None:
    """Stop a benchmarked server, then remove what it wrote: its Redis keys and (with ``dsn``) its schema."""
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    for i in range(0, len(keys), 500):
        client.delete(*keys[i : i + 500])
    client.close()
    if dsn is not None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


async def wait_ready(
    probe: Callable[[], Awaitable[bool]], proc: subprocess.Popen[bytes], timeout: float = 60
) -> None:
    """Poll ``probe`` until it says the server is ready; fail if the server exits or never gets ready."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"sessions serve exited with {proc.returncode}")
        if await probe():
            return
        await asyncio.sleep(0.2)
    raise SystemExit("sessions serve did not become ready")


async def measure(
    clients: int, duration: float, call: Callable[[int], Awaitable[bool]]
) -> tuple[int, float, list[float]]:
    """``clients`` closed loops of ``call(client index)`` (True: success) for ``duration`` seconds."""
    latencies: list[float] = []
    errors = 0
    stop = time.monotonic() + duration

    async def worker(i: int) -> None:
        nonlocal errors
        while time.monotonic() < stop:
            t = time.perf_counter()
            ok = await call(i)
            latencies.append(time.perf_counter() - t)
            errors += not ok

    start = time.monotonic()
    await asyncio.gather(*(worker(i) for i in range(clients)))
    elapsed = time.monotonic() - start
    if errors:
        print(f"  warning: {errors} requests failed", file=sys.stderr)
    return len(latencies), elapsed, latencies


@dataclass(frozen=True)
class Row:
    """One operation at one concurrency level."""

    name: str
    clients: int
    count: int
    rate: float
    p50: float
    p99: float

    @property
    def kind(self) -> str:
        """What the raw limit does for it: ``append`` or ``read``."""
        return "append" if self.name.startswith("append") else "read"


async def level(name: str, clients: int, duration: float, call: Callable[[int], Awaitable[bool]]) -> Row:
    """A warm-up, then ``duration`` seconds of ``clients`` closed loops; printed as it ends."""
    await measure(clients, min(1.0, duration / 4), call)
    count, elapsed, lat = await measure(clients, duration, call)
    row = Row(name, clients, count, count / elapsed, pct(lat, 0.5), pct(lat, 0.99))
    print(
        f"  {name:<28} clients={clients:<3} {row.rate:8.0f} req/s"
        f"  p50 {row.p50:6.2f} ms  p99 {row.p99:6.2f} ms",
        flush=True,
    )
    return row


def compare(ours: list[Row], raw: list[Row]) -> None:
    """Ours against the raw limit measured in the same run: throughput ratio (goal >= 0.6) and p99 ratio
    (goal at 1 client <= 2)."""
    limit = {(r.kind, r.clients): r for r in raw}
    print("\nours / raw limit (same run, same client):")
    print(
        f"  {'operation':<28} {'clients':>7} {'ours req/s':>10} {'raw req/s':>10} {'ratio':>6}"
        f"  {'p99 ours/raw':>14}"
    )
    for r in ours:
        base = limit.get((r.kind, r.clients))
        if base is None:
            continue
        print(
            f"  {r.name:<28} {r.clients:>7} {r.rate:>10.0f} {base.rate:>10.0f} {r.rate / base.rate:>6.2f}"
            f"  {r.p99:>5.2f}/{base.p99:<5.2f} ms ({r.p99 / base.p99:.1f}x)"
        )

"""``python -m bench api``: requests/s and p50/p99 latency of the HTTP API, at 1 and 16 concurrent clients.

Two operations, each for ``--duration`` seconds per concurrency level:

* append a turn: ``POST /v1/sessions/{id}/messages`` with a user and an assistant message (each client
  writes its own session, as agents do);
* read the latest 20 messages of a 1,000-message session: ``GET .../messages?limit=20&order=desc`` (with the
  read-your-writes wait, as every read has).

The server is ``sessions serve`` in a subprocess on a loopback port, on the real servers by default (Redis at
``--redis-url``, PostgreSQL at ``--dsn`` in a fresh schema, in-process projector), under a fresh key prefix;
everything it wrote is removed afterwards. ``--storage memory`` uses the in-memory read model instead.
The measured clients are a minimal keep-alive HTTP/1.1 client in this process (httpx sets the data up): on a
small machine they share its cores with the server, so the figures are a floor, not a ceiling.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable

import httpx
import psycopg
import redis

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
TURN = {
    "messages": [
        {"role": "user", "content": "Can you check the weather in Lisbon for Saturday? " * 2},
        {"role": "assistant", "content": "It will be sunny, around 21 °C. " * 3},
    ]
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=url) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"sessions serve exited with {proc.returncode}")
            try:
                if (await client.get("/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    raise SystemExit("sessions serve did not become ready")


class RawConnection:
    """A minimal HTTP/1.1 keep-alive client for the measured loop: httpx costs more CPU per request than the
    server does, and on a small machine the client's CPU would be what gets measured."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, target: str, body: bytes = b"") -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = f"{method} {target} HTTP/1.1\r\nHost: {self.host}\r\n"
        if body:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self.writer.write(head.encode() + b"\r\n" + body)
        status_line = await self.reader.readline()
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await self.reader.readexactly(length)
        return int(status_line.split()[1])

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            await self.writer.wait_closed()


async def _run(
    clients: int, duration: float, op: Callable[[RawConnection, int], Awaitable[int]], url: str
) -> tuple[int, float, list[float]]:
    latencies: list[float] = []
    errors = 0
    stop = time.monotonic() + duration
    host, port = url.split("//", 1)[1].split(":")
    connections = [RawConnection(host, int(port)) for _ in range(clients)]

    async def worker(i: int) -> None:
        nonlocal errors
        while time.monotonic() < stop:
            t = time.perf_counter()
            status = await op(connections[i], i)
            latencies.append(time.perf_counter() - t)
            if status >= 400:
                errors += 1

    start = time.monotonic()
    try:
        await asyncio.gather(*(worker(i) for i in range(clients)))
    finally:
        for c in connections:
            await c.close()
    elapsed = time.monotonic() - start
    if errors:
        print(f"  warning: {errors} requests failed", file=sys.stderr)
    return len(latencies), elapsed, latencies


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def bench(
    url: str, levels: list[int], duration: float
) -> list[tuple[str, int, int, float, float, float]]:
    limits = httpx.Limits(max_connections=max(levels) + 4, max_keepalive_connections=max(levels) + 4)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as http:
        # The 1,000-message session the reads page through.
        r = await http.post("/v1/sessions", json={"user_id": "bench-reader", "session_id": "bench-read"})
        r.raise_for_status()
        batch = {
            "messages": [
                {"role": "user" if i % 2 == 0 else "assistant", "content": f"message {i}"} for i in range(100)
            ]
        }
        for _ in range(10):
            (await http.post("/v1/sessions/bench-read/messages", json=batch)).raise_for_status()
        writers = []
        for i in range(max(levels)):
            r = await http.post("/v1/sessions", json={"user_id": f"bench-writer-{i}"})
            r.raise_for_status()
            writers.append(r.json()["session_id"])
        total = (await http.get("/v1/sessions/bench-read/messages", params={"limit": 1})).json()["total"]
        assert total == 1000, total

        turn = json.dumps(TURN).encode()

        async def append(conn: RawConnection, i: int) -> int:
            return await conn.request("POST", f"/v1/sessions/{writers[i]}/messages", turn)

        async def read(conn: RawConnection, i: int) -> int:
            return await conn.request("GET", "/v1/sessions/bench-read/messages?limit=20&order=desc")

        rows = []
        for name, op in (("append a turn", append), ("read latest 20 of 1,000", read)):
            for n in levels:
                await _run(n, min(1.0, duration / 4), op, url)  # warm-up
                count, elapsed, lat = await _run(n, duration, op, url)
                rows.append((name, n, count, count / elapsed, _pct(lat, 0.5), _pct(lat, 0.99)))
                print(
                    f"  {name:<26} clients={n:<3} {count / elapsed:8.0f} req/s  p50 {_pct(lat, 0.5):6.2f} ms"
                    f"  p99 {_pct(lat, 0.99):6.2f} ms",
                    flush=True,
                )
        return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench api", description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per operation and level")
    parser.add_argument("--clients", default="1,16", help="concurrency levels, comma-separated")
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", DEFAULT_REDIS))
    parser.add_argument("--dsn", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DSN))
    parser.add_argument("--storage", choices=["postgres", "memory"], default="postgres")
    args = parser.parse_args(argv)
    for url in (args.redis_url,):
        host = url.split("//", 1)[-1].split("@")[-1].split(":")[0].split("/")[0]
        if host not in ("127.0.0.1", "localhost", "::1", "[::1]"):
            raise SystemExit("benchmarks only target loopback servers")
    levels = [int(x) for x in args.clients.split(",")]

    tag = uuid.uuid4().hex[:10]
    prefix, schema, port = f"bench-api-{tag}", f"bench_api_{tag}", _free_port()
    env = {
        **os.environ,
        "REDIS_URL": args.redis_url,
        "SESSIONS_REDIS_PREFIX": prefix,
        "SESSIONS_HTTP_PORT": str(port),
        "SESSIONS_PORT": str(_free_port()),  # gRPC, started beside HTTP
        "SESSIONS_HTTP_HOST": "127.0.0.1",
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
    url = f"http://127.0.0.1:{port}"
    print(
        f"bench api: sessions serve on {url} ({args.storage} read model, Redis {args.redis_url}, "
        f"{args.duration:g} s per level)"
    )
    try:
        asyncio.run(_wait_ready(url, proc))
        asyncio.run(bench(url, levels, args.duration))
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

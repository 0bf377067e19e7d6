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

import httpx

from ._harness import add_stack_arguments, measure, pct, served_stack, wait_ready

TURN = {
    "messages": [
        {"role": "user", "content": "Can you check the weather in Lisbon for Saturday? " * 2},
        {"role": "assistant", "content": "It will be sunny, around 21 °C. " * 3},
    ]
}


async def _ready(url: str) -> bool:
    async with httpx.AsyncClient(base_url=url) as client:
        try:
            return (await client.get("/readyz")).status_code == 200
        except httpx.TransportError:
            return False


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

        host, port = url.split("//", 1)[1].split(":")
        conns = [RawConnection(host, int(port)) for _ in range(max(levels))]

        async def append(i: int) -> bool:
            return await conns[i].request("POST", f"/v1/sessions/{writers[i]}/messages", turn) < 400

        async def read(i: int) -> bool:
            return await conns[i].request("GET", "/v1/sessions/bench-read/messages?limit=20&order=desc") < 400

        rows = []
        try:
            for name, op in (("append a turn", append), ("read latest 20 of 1,000", read)):
                for n in levels:
                    await measure(n, min(1.0, duration / 4), op)  # warm-up
                    count, elapsed, lat = await measure(n, duration, op)
                    p50, p99 = pct(lat, 0.5), pct(lat, 0.99)
                    rows.append((name, n, count, count / elapsed, p50, p99))
                    print(
                        f"  {name:<26} clients={n:<3} {count / elapsed:8.0f} req/s  p50 {p50:6.2f} ms"
                        f"  p99 {p99:6.2f} ms",
                        flush=True,
                    )
        finally:
            for c in conns:
                await c.close()
        return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench api", description=__doc__.split("\n\n")[0])
    add_stack_arguments(parser, duration=8.0)
    args = parser.parse_args(argv)
    levels = [int(x) for x in args.clients.split(",")]
    with served_stack(args, "api") as stack:
        print(
            f"bench api: sessions serve on {stack.http_url} ({args.storage} read model, "
            f"Redis {args.redis_url}, {args.duration:g} s per level)"
        )
        asyncio.run(wait_ready(lambda: _ready(stack.http_url), stack.proc))
        asyncio.run(bench(stack.http_url, levels, args.duration))


if __name__ == "__main__":
    main()

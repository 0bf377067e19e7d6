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

from ._client import RawConnection
from ._harness import Row, add_stack_arguments, compare, free_port, level, served_stack, wait_ready
from ._raw import raw_stack

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


async def bench(url: str, levels: list[int], duration: float) -> list[Row]:
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

    return await run(url, writers, levels, duration)


async def run(url: str, writers: list[str], levels: list[int], duration: float) -> list[Row]:
    """Append a turn, then read the latest 20 of ``bench-read``, at each level, through ``RawConnection``."""
    turn = json.dumps(TURN).encode()
    host, port = url.split("//", 1)[1].split(":")
    conns = [RawConnection(host, int(port)) for _ in range(max(levels))]

    async def append(i: int) -> bool:
        return await conns[i].request("POST", f"/v1/sessions/{writers[i]}/messages", turn) < 400

    async def read(i: int) -> bool:
        return await conns[i].request("GET", "/v1/sessions/bench-read/messages?limit=20&order=desc") < 400

    try:
        return [
            await level(name, n, duration, op)
            for name, op in (("append a turn", append), ("read latest 20 of 1,000", read))
            for n in levels
        ]
    finally:
        for c in conns:
            await c.close()


async def bench_raw(url: str, levels: list[int], duration: float) -> list[Row]:
    """The same requests against the raw limit (``bench._raw``), whose data is already seeded."""
    return await run(url, [f"raw-writer-{i}" for i in range(max(levels))], levels, duration)


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
        ours = asyncio.run(bench(stack.http_url, levels, args.duration))
    if args.no_raw:
        return
    with raw_stack(args.redis_url, args.dsn, free_port()) as raw:
        print(f"raw limit: bare ASGI app (uvicorn, httptools, uvloop) on {raw.url}")
        asyncio.run(wait_ready(lambda: _ready(raw.url), raw.proc))
        limit = asyncio.run(bench_raw(raw.url, levels, args.duration))
    compare(ours, limit)


if __name__ == "__main__":
    main()

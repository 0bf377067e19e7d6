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
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from proto import sessions_pb2 as pb
from proto import sessions_pb2_grpc as pb_grpc

from . import api
from ._harness import Row, add_stack_arguments, compare, free_port, level, served_stack, wait_ready
from ._raw import raw_stack

TURN = [
    pb.Message(role="user", content="Can you check the weather in Lisbon for Saturday? " * 2),
    pb.Message(role="assistant", content="It will be sunny, around 21 °C. " * 3),
]
Op = Callable[[Any, int], Awaitable[Any]]


async def _ready(target: str) -> bool:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.SessionServiceStub(channel)
        try:
            await stub.ListSessions(pb.ListSessionsRequest(user_id="bench-probe"), timeout=2)
            return True
        except grpc.aio.AioRpcError:
            return False


def _succeeds(op: Op, stubs: list[Any]) -> Callable[[int], Awaitable[bool]]:
    async def call(i: int) -> bool:
        try:
            await op(stubs[i], i)
            return True
        except grpc.aio.AioRpcError:
            return False

    return call


async def bench(target: str, levels: list[int], duration: float) -> list[Row]:
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

        ops: list[tuple[str, Op]] = [
            ("append a turn", append),
            ("latest 20 of 1,000 (desc)", latest),
            ("latest 20 of 1,000 (last_n)", last_n),
        ]
        return [await level(name, n, duration, _succeeds(op, stubs)) for name, op in ops for n in levels]
    finally:
        for c in channels:
            await c.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench api_grpc", description=__doc__.split("\n\n")[0])
    add_stack_arguments(parser, duration=5.0)
    args = parser.parse_args(argv)
    levels = [int(x) for x in args.clients.split(",")]
    with served_stack(args, "grpc") as stack:
        print(
            f"bench api_grpc: sessions serve, gRPC on {stack.grpc_target} ({args.storage} read model, "
            f"Redis {args.redis_url}, {args.duration:g} s per level)"
        )
        asyncio.run(wait_ready(lambda: _ready(stack.grpc_target), stack.proc))
        ours = asyncio.run(bench(stack.grpc_target, levels, args.duration))
    if args.no_raw:
        return
    with raw_stack(args.redis_url, args.dsn, free_port()) as raw:
        print(f"raw limit: bare ASGI app (uvicorn, httptools, uvloop) on {raw.url}, over HTTP")
        asyncio.run(wait_ready(lambda: api._ready(raw.url), raw.proc))
        limit = asyncio.run(api.bench_raw(raw.url, levels, args.duration))
    compare(ours, limit)


if __name__ == "__main__":
    main()

"""``python -m bench append``: appends per second against raw XADD of the same bytes, on the same Redis.

Single client: one append (one turn of 2-4 messages) per round trip, against one XADD per round trip, with
the asyncio client (``EventLog``) and with the blocking one (``Publisher``).
Batched: appends pipelined ``--batch`` at a time (``EventLog.append_batch``), against XADDs pipelined the
same way. Both sides use the same asyncio redis-py client, so the ratio isolates what the append adds:
the script's checks, the state and idempotency keys.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import time
import uuid

import redis
import redis.asyncio as aioredis

from events import EventLog, LogSettings, Publisher, encode_event
from events.schema import (
    FunctionCall,
    Message,
    MessagesAdded,
    MessagesAddedPayload,
    SessionCreated,
    SessionCreatedPayload,
    ToolCall,
)


def turn(sid: str, n: int, rng: random.Random) -> MessagesAdded:
    """One conversation turn: a user message and the assistant's answer, sometimes through a tool call."""
    now = int(time.time() * 1000)
    user = Message(
        role="user", content="Can you check the weather in Lisbon for Saturday? " * 2, timestamp=now
    )
    if rng.random() < 0.3:
        cid = f"call_{n}"
        messages = [
            user,
            Message(
                role="assistant",
                timestamp=now,
                tool_calls=[
                    ToolCall(
                        id=cid, function=FunctionCall(name="get_weather", arguments='{"city": "Lisbon"}')
                    )
                ],
            ),
            Message(role="tool", content='{"temp_c": 21, "sky": "clear"}', tool_call_id=cid, timestamp=now),
            Message(role="assistant", content="Saturday in Lisbon: 21 °C and clear skies.", timestamp=now),
        ]
    else:
        messages = [
            user,
            Message(role="assistant", content="It will be sunny, around 21 °C." * 3, timestamp=now),
        ]
    return MessagesAdded(
        aggregate_kind="session", aggregate_id=sid, payload=MessagesAddedPayload(messages=messages)
    )


async def run(url: str, count: int, batch: int, sessions: int) -> None:
    client = aioredis.Redis.from_url(url)
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    log = EventLog(client, LogSettings(prefix=prefix, partitions=16))
    rng = random.Random(7)
    try:
        await log.setup()
        sids = [f"bench-session-{i}" for i in range(sessions)]
        for sid in sids:
            await log.append(
                [
                    SessionCreated(
                        aggregate_kind="session",
                        aggregate_id=sid,
                        payload=SessionCreatedPayload(user_id="bench-user"),
                    )
                ]
            )
        turns = [turn(sids[i % sessions], i, rng) for i in range(count)]
        payloads = [encode_event(t) for t in turns]
        messages = sum(len(t.payload.messages) for t in turns)
        raw_key = f"{prefix}:{{0}}:raw"

        # Warm up both paths (script cache, connections).
        await log.append([turn(sids[0], -1, rng)])
        await client.xadd(raw_key, {"type": "x", "version": "0", "event": payloads[0]})

        half = count // 2
        t0 = time.perf_counter()
        for t in turns[:half]:
            await log.append([t])
        single = half / (time.perf_counter() - t0)

        t0 = time.perf_counter()
        for i, data in enumerate(payloads[:half]):
            await client.xadd(
                raw_key, {"type": "session.messages_added.v1", "version": str(i), "event": data}
            )
        raw_single = half / (time.perf_counter() - t0)

        # The same single-client comparison through the blocking client (events.Publisher).
        sync_client = redis.Redis.from_url(url)
        publisher = Publisher(sync_client, log.settings)
        quarter = [turn(sids[i % sessions], count + i, rng) for i in range(half // 2)]
        t0 = time.perf_counter()
        for t in quarter:
            publisher.publish([t])
        sync_single = len(quarter) / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        for i, data in enumerate(payloads[: len(quarter)]):
            sync_client.xadd(raw_key, {"type": "session.messages_added.v1", "version": str(i), "event": data})
        sync_raw = len(quarter) / (time.perf_counter() - t0)
        sync_client.close()

        rest = turns[half:]
        t0 = time.perf_counter()
        for i in range(0, len(rest), batch):
            results = await log.append_batch([[t] for t in rest[i : i + batch]])
            assert not any(isinstance(r, Exception) for r in results), results
        batched = len(rest) / (time.perf_counter() - t0)

        t0 = time.perf_counter()
        for i in range(half, count, batch):
            async with client.pipeline(transaction=False) as pipe:
                for j, data in enumerate(payloads[i : i + batch]):
                    pipe.xadd(
                        raw_key, {"type": "session.messages_added.v1", "version": str(j), "event": data}
                    )
                await pipe.execute()
        raw_batched = (count - half) / (time.perf_counter() - t0)

        avg_bytes = sum(map(len, payloads)) / len(payloads)
        print(
            f"append benchmark: {count} turns ({messages} messages, {avg_bytes:.0f} B per event), "
            f"{sessions} sessions, 16 partitions, Redis at {url}"
        )
        print(f"{'':24}{'appends/s':>12}{'raw XADD/s':>12}{'ratio':>8}")
        rows = [
            ("single, asyncio client", single, raw_single),
            ("single, blocking client", sync_single, sync_raw),
            (f"pipelined x{batch}", batched, raw_batched),
        ]
        for name, ours, raw in rows:
            print(f"{name:24}{ours:>12,.0f}{raw:>12,.0f}{ours / raw:>8.0%}")
        print(
            f"messages/s: single {single * messages / count:,.0f}, "
            f"pipelined {batched * messages / count:,.0f}"
        )
    finally:
        keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
        for i in range(0, len(keys), 500):
            await client.delete(*keys[i : i + 500])
        await client.aclose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench append", description=__doc__)
    parser.add_argument("--url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument(
        "--count", type=int, default=20_000, help="turns appended in all (half single, half batched)"
    )
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--sessions", type=int, default=200)
    args = parser.parse_args(argv)
    asyncio.run(run(args.url, args.count, args.batch, args.sessions))

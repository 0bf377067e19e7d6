"""``python -m bench project``: projector throughput against a raw COPY of the same rows, and query latency.

On the real servers (Redis at ``--redis``, PostgreSQL at ``--dsn``), under a fresh key prefix and a fresh
schema, both removed afterwards:

1. fill a 16-partition log with a conversation workload: ``--sessions`` sessions of 4 to 12 turns (a user
   message and the assistant's answer; 15% of turns are tool-call rounds: user, assistant with a tool call,
   the tool's result, the assistant's answer), memory writes on 10% of turns (user or session scope), plus
   one session of 1,000 messages for the queries;
2. project it from a cold checkpoint to caught up: events/s, messages/s, rows/s (message and archive rows);
3. the baseline: COPY the rows the projector wrote, read back as they are (every message row and every
   archive row: the archive is part of the projection), into empty tables with the same columns and a primary
   key only, in one transaction, best of three: rows/s; print it, the projector's rows/s (messages + archive
   rows) and the ratio;
4. query the 1,000-message session: the latest 20 messages, and a page of 20 at offset 900: p50/p99.

``--workers N`` projects with N forked worker processes (each takes ~16/N partitions through the leases);
``--concurrency`` sets how many partitions one worker applies at once.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import multiprocessing
import os
import random
import time
import uuid
from collections.abc import Sequence
from typing import Any

import psycopg
import redis.asyncio as aioredis

from events import EventLog, LogSettings
from events.schema import (
    Event,
    FunctionCall,
    MemorySaved,
    MemorySavedPayload,
    Message,
    MessagesAdded,
    MessagesAddedPayload,
    SessionCreated,
    SessionCreatedPayload,
    ToolCall,
)

__all__ = ["main", "workload"]

PARTITIONS = 16
BIG_SESSION = "bench-big-session"

_QUESTIONS = [
    "Can you summarise the quarterly report I uploaded yesterday and list the three biggest risks?",
    "What is the weather going to be like in Lisbon on Saturday afternoon?",
    "Rewrite this paragraph so it sounds friendlier but keeps every technical detail intact.",
    "Which of my open tickets are blocked, and who is assigned to each of them?",
]
_ANSWERS = [
    "Here is a short summary. Revenue grew 12% quarter over quarter, driven mostly by the new enterprise "
    "tier; the three biggest risks are supplier concentration, the delayed EU launch and rising churn.",
    "Saturday afternoon in Lisbon looks clear and mild: around 21 °C with a light north-westerly breeze.",
    "Sure! Here is a friendlier version that keeps the details: we moved the cache in front of the database, "
    "so pages load about twice as fast, and nothing about your existing setup needs to change.",
]


def _turn(sid: str, n: int, rng: random.Random, ts: int) -> MessagesAdded:
    user = Message(role="user", content=rng.choice(_QUESTIONS), timestamp=ts)
    if rng.random() < 0.15:
        cid = f"call_{sid}_{n}"
        call = ToolCall(
            id=cid, function=FunctionCall(name="search_documents", arguments='{"query": "report"}')
        )
        messages = [
            user,
            Message(role="assistant", tool_calls=[call], timestamp=ts),
            Message(
                role="tool", content='{"hits": 3, "top": "Q3 report.pdf"}', tool_call_id=cid, timestamp=ts
            ),
            Message(role="assistant", content=rng.choice(_ANSWERS), timestamp=ts),
        ]
    else:
        messages = [user, Message(role="assistant", content=rng.choice(_ANSWERS), timestamp=ts)]
    return MessagesAdded(
        aggregate_kind="session", aggregate_id=sid, payload=MessagesAddedPayload(messages=messages)
    )


def _memory(user: str, sid: str, n: int, rng: random.Random) -> MemorySaved:
    session = sid if rng.random() < 0.5 else None
    return MemorySaved(
        aggregate_kind="session" if session else "memory",
        aggregate_id=session or user,
        payload=MemorySavedPayload(
            user_id=user, key=f"pref_{n % 7}", value={"likes": "short answers", "n": n}, session_id=session
        ),
    )


def workload(sessions: int, seed: int = 7) -> list[list[Event]]:
    """Appends in the order a busy service would make them: sessions interleaved, turns in order."""
    rng = random.Random(seed)
    ts = 1_700_000_000_000
    plans = []
    for i in range(sessions):
        sid, user = f"bench-s{i}", f"bench-u{i % 200}"
        steps: list[Event] = [
            SessionCreated(
                aggregate_kind="session", aggregate_id=sid, payload=SessionCreatedPayload(user_id=user)
            )
        ]
        for n in range(rng.randint(4, 12)):
            steps.append(_turn(sid, n, rng, ts + n))
            if rng.random() < 0.10:
                steps.append(_memory(user, sid, n, rng))
        plans.append(steps)
    big: list[Event] = [
        SessionCreated(
            aggregate_kind="session",
            aggregate_id=BIG_SESSION,
            payload=SessionCreatedPayload(user_id="bench-u0"),
        )
    ]
    big.extend(
        MessagesAdded(
            aggregate_kind="session",
            aggregate_id=BIG_SESSION,
            payload=MessagesAddedPayload(
                messages=[
                    Message(role="user", content=f"question {n}: " + _QUESTIONS[n % 4], timestamp=ts + n),
                    Message(role="assistant", content=_ANSWERS[n % 3], timestamp=ts + n),
                ]
            ),
        )
        for n in range(500)
    )
    plans.append(big)
    # Round-robin over the sessions, one step each: every session's own order is kept.
    out: list[list[Event]] = []
    depth = max(map(len, plans))
    for k in range(depth):
        out.extend([p[k]] for p in plans if k < len(p))
    return out


async def _fill(log: EventLog, appends: Sequence[list[Event]], chunk: int = 200) -> tuple[int, int]:
    messages = 0
    for i in range(0, len(appends), chunk):
        part = appends[i : i + chunk]
        for r in await log.append_batch(part):
            if isinstance(r, Exception):
                raise r
        messages += sum(len(e.payload.messages) for a in part for e in a if isinstance(e, MessagesAdded))
    return len(appends), messages


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run(args: argparse.Namespace) -> None:
    from consumers.projector import Projector
    from projections.postgres import PostgresReadModel

    client = aioredis.Redis.from_url(args.redis)
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    log = EventLog(client, LogSettings(prefix=prefix, partitions=PARTITIONS))
    read_model = None
    try:
        await log.setup()
        appends = workload(args.sessions)
        t0 = time.perf_counter()
        events, messages = await _fill(log, appends)
        fill_s = time.perf_counter() - t0
        # A projector process holds neither the workload nor the fill's garbage; what it has at startup
        # (modules, the workload's survivors) stays for good: frozen, so no GC pass scans it again (what
        # ``python -m consumers project`` does after startup too).
        del appends
        gc.collect()
        gc.freeze()
        read_model = await PostgresReadModel.open(args.dsn, schema)  # creates and migrates the schema

        if args.workers == 1:
            projector = Projector(
                log, read_model, worker_id="bench", batch_size=args.batch_size, concurrency=args.concurrency
            )
            t0 = time.perf_counter()
            stats = await projector.run_until_caught_up(timeout_s=600)
            project_s = time.perf_counter() - t0
            applied = (stats.applied, stats.messages)
        else:
            applied, project_s = _project_in_processes(args, prefix, schema)  # fork from the main thread
        assert applied == (events, messages), (applied, events, messages)

        copy_rows, copy_s = _raw_copy(args.dsn, schema)
        latest, page = await _latency(read_model, args.queries)
    finally:
        if read_model is not None:
            await read_model.close()
        with psycopg.connect(args.dsn, autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
        for i in range(0, len(keys), 500):
            await client.delete(*keys[i : i + 500])
        await client.aclose()

    ev_s, msg_s = events / project_s, messages / project_s
    copied = sum(copy_rows.values())
    rows_s, copy_rate = (messages + events) / project_s, copied / copy_s
    print(
        f"project benchmark: {args.sessions + 1} sessions, {events:,} events, {messages:,} messages, "
        f"{PARTITIONS} partitions, batch {args.batch_size}, {args.workers} worker(s) applying "
        f"{args.concurrency} partitions at once (log filled in {fill_s:.1f}s)"
    )
    print(
        f"projector, cold to caught up: {project_s:6.2f}s  {ev_s:>9,.0f} events/s  {msg_s:>9,.0f} messages/s"
        f"  {rows_s:>9,.0f} rows/s (messages + archive)"
    )
    print(
        f"raw COPY, best/3:             {copy_s:6.2f}s  {copied:>9,} rows    {copy_rate:>9,.0f} rows/s"
        f"  ({copy_rows['messages']:,} message rows + {copy_rows['event_archive']:,} archive rows, binary,"
        " into empty tables with the same columns and a primary key only)"
    )
    print(f"projector / raw COPY (rows/s / rows/s): {rows_s / copy_rate:.0%} (goal >= 30%)")
    for name, samples in (("latest 20 of 1,000", latest), ("page of 20 at offset 900", page)):
        print(
            f"query {name:<26} p50 {_pct(samples, 0.5) * 1000:6.3f} ms  "
            f"p99 {_pct(samples, 0.99) * 1000:6.3f} ms  ({len(samples)} runs; goal p99 < 2 ms)"
        )


def _project_in_processes(
    args: argparse.Namespace, prefix: str, schema: str
) -> tuple[tuple[int, int], float]:
    """``args.workers`` projector processes (forked, so they start with everything imported), released
    together once each has announced itself; timed from the release to the last one caught up."""
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Barrier(args.workers + 1)
    results: multiprocessing.Queue[tuple[int, int]] = ctx.Queue()
    procs = [
        ctx.Process(target=_worker_process, args=(args, prefix, schema, f"bench-{i}", ready, results))
        for i in range(args.workers)
    ]
    for proc in procs:
        proc.start()
    ready.wait(timeout=60)
    t0 = time.perf_counter()
    totals = [results.get(timeout=600) for _ in procs]
    elapsed = time.perf_counter() - t0
    for proc in procs:
        proc.join(timeout=60)
        if proc.exitcode != 0:
            raise RuntimeError(f"a projector process failed (exit code {proc.exitcode})")
    return (sum(t[0] for t in totals), sum(t[1] for t in totals)), elapsed


def _worker_process(
    args: argparse.Namespace, prefix: str, schema: str, worker_id: str, ready: Any, results: Any
) -> None:
    from consumers.projector import Projector
    from projections.postgres import PostgresReadModel

    async def go() -> tuple[int, int]:
        client = aioredis.Redis.from_url(args.redis)
        log = EventLog(client, LogSettings(prefix=prefix, partitions=PARTITIONS))
        read_model = await PostgresReadModel.open(args.dsn, schema)
        try:
            projector = Projector(
                log,
                read_model,
                worker_id=worker_id,
                batch_size=args.batch_size,
                concurrency=args.concurrency,
                lease_ttl_ms=600,
            )
            await projector.leases.heartbeat()  # every worker is known before any takes its share
            await asyncio.to_thread(ready.wait, 60)
            stats = await projector.run_until_caught_up(timeout_s=600)
            return stats.applied, stats.messages
        finally:
            await read_model.close()
            await client.aclose()

    results.put(asyncio.run(go()))


# The tables the projector fills with COPY, and their primary keys: the raw baseline writes the same rows.
_COPIED = {"messages": "tenant, session_id, seq", "event_archive": "partition, pos_ms, pos_seq"}


def _raw_copy(dsn: str, schema: str) -> tuple[dict[str, int], float]:
    """COPY the rows the projector wrote (every message row and every archive row, read back as they are)
    into empty tables with the same columns and a primary key only, in one transaction: best of three."""
    with psycopg.connect(dsn) as conn:
        conn.execute(f'SET search_path TO "{schema}"')
        data: dict[str, bytearray] = {}
        for table, key in _COPIED.items():
            conn.execute(f"CREATE TABLE bench_{table} (LIKE {table} INCLUDING DEFAULTS, PRIMARY KEY ({key}))")
            data[table] = buf = bytearray()
            with conn.cursor().copy(f"COPY {table} TO STDOUT (FORMAT binary)") as out:
                for chunk in out:
                    buf += chunk
        conn.commit()
        best = float("inf")
        for _ in range(3):  # one COPY lasts a fraction of a second: take the best of three
            conn.execute("TRUNCATE " + ", ".join(f"bench_{t}" for t in _COPIED))
            conn.commit()
            t0 = time.perf_counter()
            for table, buf in data.items():
                with conn.cursor().copy(f"COPY bench_{table} FROM STDIN (FORMAT binary)") as into:
                    for i in range(0, len(buf), 1 << 20):
                        into.write(buf[i : i + (1 << 20)])
            conn.commit()
            best = min(best, time.perf_counter() - t0)
        rows = {}
        for table in _COPIED:
            row = conn.execute(f"SELECT count(*) FROM bench_{table}").fetchone()
            rows[table] = int(row[0]) if row else 0
    return rows, best


async def _latency(read_model: object, runs: int) -> tuple[list[float], list[float]]:
    get = read_model.get_messages  # type: ignore[attr-defined]
    for _ in range(20):  # warm the connection and the plan cache
        await get("default", BIG_SESSION, limit=20, order="desc")
    latest, page = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        res = await get("default", BIG_SESSION, limit=20, order="desc")
        latest.append(time.perf_counter() - t0)
        assert len(res.messages) == 20 and res.total == 1000
        t0 = time.perf_counter()
        res = await get("default", BIG_SESSION, limit=20, offset=900)
        page.append(time.perf_counter() - t0)
        assert [m.seq for m in res.messages] == list(range(901, 921))
    return latest, page


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench project", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=4, help="partitions applied at once")
    parser.add_argument("--workers", type=int, default=1, help="projector processes (each takes ~16/N)")
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--redis", default=os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0")
    parser.add_argument(
        "--dsn", default=os.environ.get("DB_CONNECTION_STRING") or "postgresql://postgres@127.0.0.1:5432/test"
    )
    args = parser.parse_args(argv)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()

"""The raw limit the API benchmarks compare against: the least a Python service must do for the same requests.

A bare ASGI app (no framework, no middleware, no dependency injection) served by uvicorn with httptools and
uvloop, on the same Redis and PostgreSQL as the service:

* ``POST /v1/sessions/{id}/messages``: decode the same turn (msgspec, typed), then ONE ``EVALSHA`` of a
  script that ``XADD``s the encoded event to a stream and bumps the session's version; answer the version;
* ``GET /v1/sessions/{id}/messages?limit=20&order=desc``: ONE indexed query for the latest 20 rows of a
  1,000-row session (primary key (session_id, seq)); answer them as JSON.

No authentication, no encryption, no read-your-writes wait, no projection: the floor under what the service
does, measured in the same run, on the same machine, by the same client. ``raw_stack`` runs it in a
subprocess (``python -m bench._raw``) under a fresh key prefix and schema, and removes them afterwards.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import msgspec

__all__ = ["RawStack", "raw_stack"]

APPEND = """
local version = redis.call('HINCRBY', KEYS[2], 'version', 1)
redis.call('XADD', KEYS[1], '*', 'type', 'session.messages_added.v1', 'version', version, 'data', ARGV[1])
return version
"""

_SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS raw_messages (
    session_id text NOT NULL,
    seq bigint NOT NULL,
    role text NOT NULL,
    content text,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (session_id, seq)
)
"""

_LATEST = "SELECT seq, role, content FROM raw_messages WHERE session_id = %s ORDER BY seq DESC LIMIT %s"


class Message(msgspec.Struct, frozen=True):
    role: str
    content: str | None = None


class Turn(msgspec.Struct, frozen=True):
    messages: list[Message]


class Row(msgspec.Struct, frozen=True):
    seq: int
    role: str
    content: str | None


class Page(msgspec.Struct, frozen=True):
    messages: list[Row]


def build_app(redis_url: str, dsn: str, schema: str, prefix: str) -> Any:
    """The ASGI callable. Connections open on the first request (uvicorn's loop is running by then)."""
    import redis.asyncio as aioredis
    from psycopg_pool import AsyncConnectionPool

    decode_turn = msgspec.json.Decoder(Turn).decode
    encode = msgspec.json.Encoder().encode
    state: dict[str, Any] = {}
    json_headers = [(b"content-type", b"application/json")]

    async def setup() -> None:
        client = aioredis.Redis.from_url(redis_url)
        state["redis"] = client
        state["sha"] = await client.script_load(APPEND)
        pool = AsyncConnectionPool(
            dsn, min_size=4, max_size=20, kwargs={"options": f"-csearch_path={schema}"}, open=False
        )
        await pool.open(wait=True)
        state["pool"] = pool

    async def body_of(receive: Any) -> bytes:
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                return b"".join(chunks)

    async def reply(send: Any, status: int, body: bytes) -> None:
        headers = [*json_headers, (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await setup()
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await state["redis"].aclose()
                    await state["pool"].close()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        path: str = scope["path"]
        parts = path.split("/")  # "", "v1", "sessions", id, "messages"
        if len(parts) != 5 or parts[2] != "sessions" or parts[4] != "messages":
            await reply(send, 200 if path == "/readyz" else 404, b"{}")
            return
        session_id = parts[3]
        if scope["method"] == "POST":
            turn = decode_turn(await body_of(receive))
            tag = f"{prefix}:{{{session_id}}}"
            version = await state["redis"].evalsha(
                state["sha"], 2, f"{tag}:stream", f"{tag}:state", encode(turn)
            )
            await reply(send, 200, b'{"version":%d}' % int(version))
            return
        async with state["pool"].connection() as conn:
            cur = await conn.execute(_LATEST, (session_id, 20), prepare=True)
            rows = await cur.fetchall()
        await reply(send, 200, encode(Page([Row(*r) for r in rows])))

    return app


@dataclass(frozen=True)
class RawStack:
    proc: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def raw_stack(redis_url: str, dsn: str, port: int, rows: int = 1000) -> Iterator[RawStack]:
    """The raw app in a subprocess, with a ``bench-read`` session of ``rows`` rows; cleaned up after."""
    import psycopg

    from ._harness import stop_and_clean

    tag = uuid.uuid4().hex[:10]
    prefix, schema = f"bench-raw-{tag}", f"bench_raw_{tag}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        conn.execute(f'SET search_path TO "{schema}"')
        conn.execute(_SCHEMA_SQL)
        with conn.cursor().copy("COPY raw_messages (session_id, seq, role, content) FROM STDIN") as copy:
            for i in range(1, rows + 1):
                copy.write_row(("bench-read", i, "user" if i % 2 else "assistant", f"message {i}"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench._raw", "--port", str(port), "--schema", schema, "--prefix", prefix],
        env={**os.environ, "REDIS_URL": redis_url, "BENCH_DATABASE_URL": dsn},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield RawStack(proc, port)
    finally:
        stop_and_clean(proc, redis_url, prefix, dsn, schema)


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m bench._raw")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--schema", required=True)
    parser.add_argument("--prefix", required=True)
    args = parser.parse_args(argv)
    app = build_app(os.environ["REDIS_URL"], os.environ["BENCH_DATABASE_URL"], args.schema, args.prefix)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()

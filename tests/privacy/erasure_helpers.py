"""Helpers of the erasure tests: write canaries, and dump everything a backend holds as text."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg

from events.log import EventLog
from service.app import Application
from tests.fix_pg import PG_DSN

CANARY = "zq7canary"  # every secret below holds it; nothing else does


def secret(name: str) -> str:
    return f"{CANARY}-{name}"


async def write_user(http: httpx.AsyncClient, user: str, sessions: list[str]) -> None:
    """Messages with a tool call and its result, user-scoped and session-scoped memory, all holding canaries
    (ids, keys, roles and tool names hold none: they are plain by design)."""
    for sid in sessions:
        r = await http.post("/v1/sessions", json={"user_id": user, "session_id": sid, "metadata": {"n": 1}})
        assert r.status_code == 201, r.text
        messages = [
            {"role": "user", "content": secret(f"question-{sid}")},
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "id": f"call-{sid}",
                        "type": "function",
                        "function": {"name": "lookup", "arguments": f'{{"q": "{secret("args-" + sid)}"}}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": f"call-{sid}", "content": secret(f"result-{sid}")},
        ]
        r = await http.post(f"/v1/sessions/{sid}/messages", json={"messages": messages})
        assert r.status_code in (200, 201), r.text
        r = await http.put(
            f"/v1/users/{user}/memory/note-{sid}", json={"value": secret(f"smem-{sid}"), "session_id": sid}
        )
        assert r.status_code == 200, r.text
    r = await http.put(f"/v1/users/{user}/memory/profile", json={"value": {"deep": [secret("umem")]}})
    assert r.status_code == 200, r.text


async def dump_read_model(app: Application, schema: str | None) -> str:
    """Every row of every read-model table (PostgreSQL), or the whole in-memory state, as text."""
    if schema is None:
        return repr(vars(app.read_model._t))  # type: ignore[attr-defined]
    out = []
    async with await psycopg.AsyncConnection.connect(PG_DSN, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", [schema]
        )
        for (table,) in await cur.fetchall():
            rows = await conn.execute(f'SELECT t::text FROM "{schema}"."{table}" t')
            out.extend(r[0] for r in await rows.fetchall())
    return "\n".join(out)


async def rows_of(app: Application, schema: str | None, user: str) -> dict[str, int]:
    """How many session and memory rows the read model holds for ``user`` (deleted sessions included)."""
    if schema is None:
        t: Any = app.read_model._t  # type: ignore[attr-defined]
        return {
            "sessions": sum(1 for s in t.sessions.values() if s.user_id == user),
            "memories": sum(len(v) for k, v in t.memories.items() if k[1] == user),
        }
    async with await psycopg.AsyncConnection.connect(PG_DSN, autocommit=True) as conn:
        counts = {}
        for table in ("sessions", "memories"):
            cur = await conn.execute(f'SELECT count(*) FROM "{schema}".{table} WHERE user_id = %s', [user])
            row = await cur.fetchone()
            assert row is not None
            counts[table] = int(row[0])
        return counts


async def dump_redis(log: EventLog) -> bytes:
    """Every key of the deployment and its value, whatever its type."""
    r = log.redis
    out: list[bytes] = []
    async for key in r.scan_iter(match=f"{log.settings.prefix}:*", count=1000):
        kind = (await r.type(key)).decode()
        out.append(key)
        if kind == "string":
            out.append(await r.get(key) or b"")
        elif kind == "hash":
            out.extend(b"%s=%s" % kv for kv in (await r.hgetall(key)).items())
        elif kind == "set":
            out.extend(await r.smembers(key))
        elif kind == "zset":
            out.extend(await r.zrange(key, 0, -1))
        elif kind == "stream":
            for _id, fields in await r.xrange(key):
                out.extend(fields.values())
    return b"\n".join(out)

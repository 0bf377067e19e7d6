"""A PostgreSQL connection cut in the middle of a batch (``pg_terminate_backend`` of the worker's connection,
while its transaction is open) leaves nothing torn, and the worker recovers by itself. Real Redis and
PostgreSQL; the test's own schema gets a trigger that holds each message COPY open for a moment, so the cut
lands inside the transaction."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator

import psycopg
import pytest

from consumers.projector import Projector
from events import EventLog, LogSettings
from projections.api import PROJECTION, AuditFilter, position_key
from tests.fix_pg import PG_DSN
from tests.fix_redis import delete_prefix, real_redis

from .pg import open_pg_read_model
from .test_projector import fill

SLOW = """
CREATE FUNCTION "{s}".slow_down() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_sleep(0.3); RETURN NULL; END $$;
CREATE TRIGGER slow_down AFTER INSERT ON "{s}".messages FOR EACH STATEMENT EXECUTE FUNCTION "{s}".slow_down();
"""


@pytest.fixture
async def real_log(key_prefix: str) -> AsyncIterator[EventLog]:
    client = await real_redis()
    log = EventLog(client, LogSettings(prefix=key_prefix, partitions=4))
    await log.setup()
    yield log
    await delete_prefix(client, key_prefix)
    await client.aclose()


async def committed_is_whole(log: EventLog, schema: str) -> None:
    """In one snapshot: every partition's archive holds exactly the stream entries up to its checkpoint."""
    async with await psycopg.AsyncConnection.connect(PG_DSN) as conn, conn.transaction():
        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        cur = await conn.execute(
            f'SELECT partition, pos_ms, pos_seq FROM "{schema}".checkpoints WHERE projection = %s',
            [PROJECTION],
        )
        cps = {p: f"{ms}-{seq}" for p, ms, seq in await cur.fetchall() if ms is not None}
        cur = await conn.execute(f'SELECT partition, count(*) FROM "{schema}".event_archive GROUP BY 1')
        archived = dict(await cur.fetchall())
    for p in range(log.partitions):
        entries = await log.read(p, count=100_000)
        upto = [e for e in entries if p in cps and position_key(e.position) <= position_key(cps[p])]
        assert archived.get(p, 0) == len(upto), (p, cps.get(p), archived.get(p), len(upto))


async def test_a_connection_cut_mid_batch_leaves_nothing_torn_and_the_worker_recovers(
    real_log: EventLog, pg_schema: str
) -> None:
    log = real_log
    rm = await open_pg_read_model(pg_schema)
    async with await psycopg.AsyncConnection.connect(PG_DSN, autocommit=True) as admin:
        await admin.execute(SLOW.format(s=pg_schema))
        n = await fill(log, 12, 4)
        worker = Projector(log, rm, worker_id="w", batch_size=10, backoff_initial_s=0.02)
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        cuts = 0
        deadline = time.monotonic() + 30
        try:
            while cuts < 3:
                assert time.monotonic() < deadline, "never caught the worker inside a batch"
                cur = await admin.execute(
                    "SELECT pid FROM pg_stat_activity WHERE wait_event = 'PgSleep'"
                    " AND pid <> pg_backend_pid() AND query ILIKE '%%copy%%'"
                )
                pids = [r[0] for r in await cur.fetchall()]
                if not pids:
                    await asyncio.sleep(0.02)
                    continue
                await admin.execute("SELECT pg_terminate_backend(%s)", [pids[0]])
                cuts += 1
                await committed_is_whole(log, pg_schema)
            await admin.execute(f'DROP TRIGGER slow_down ON "{pg_schema}".messages')
            heads = await log.heads()
            while True:
                cps = await rm.checkpoints(PROJECTION)
                if all(cps.get(p) and cps[p].position == h for p, h in heads.items() if h):
                    break
                assert time.monotonic() < deadline + 30, "the worker did not recover"
                await asyncio.sleep(0.05)
        finally:
            stop.set()
            await task
    try:
        assert worker.stats.outages >= 1 and worker.stats.applied == n
        await committed_is_whole(log, pg_schema)
        for i in range(12):
            page = await rm.get_messages("default", f"s{i}")
            assert [m.content for m in page.messages] == [x for t in range(4) for x in (f"q{t}", f"a{t}")]
            assert [m.seq for m in page.messages] == list(range(1, 9))
        audit = await rm.audit(AuditFilter(), limit=1000)
        assert len(audit.events) == n
        assert Counter(e.event_id for e in audit.events).most_common(1)[0][1] == 1
    finally:
        await rm.close()

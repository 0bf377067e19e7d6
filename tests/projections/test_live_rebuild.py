"""A rebuild on the real servers, beside writers and readers: the switch to the rebuilt read models is
invisible (issue 15, item 11). Every read answers fresh (at least what the log had acknowledged before the
read began) or 503, before, during and after each switch; the final state is exact.

The parts run as they do in a deployment, each with its own pool: the service (no in-process projector: it
polls the checkpoints), a projector worker, and ``sessions rebuild`` (``projections.rebuild.rebuild``).
"""

from __future__ import annotations

import asyncio
import random
import time

from consumers.projector import Projector
from events import EventLog, LogSettings
from events.errors import Unavailable
from events.schema import Message
from projections.postgres import PostgresReadModel
from projections.rebuild import rebuild
from service.app import Application
from service.request import Context
from service.settings import ServiceSettings
from tests.fix_pg import PG_DSN
from tests.fix_redis import delete_prefix, real_redis

SESSIONS = 24
REBUILDS = 3


async def test_reads_stay_fresh_or_503_through_live_rebuilds(pg_schema: str, key_prefix: str) -> None:
    settings = LogSettings(prefix=key_prefix, partitions=4)
    log = EventLog(await real_redis(), settings)
    await log.setup()
    served = await PostgresReadModel.open(PG_DSN, pg_schema, min_size=1, max_size=4)
    worker_model = await PostgresReadModel.open(PG_DSN, pg_schema, min_size=1, max_size=4)
    rebuilt = await PostgresReadModel.open(PG_DSN, pg_schema, min_size=1, max_size=3)
    app = Application(
        log, served, settings=ServiceSettings(read_timeout_s=2.0, log=settings, encryption=False)
    )
    projector = Projector(log, worker_model, block_ms=20, lease_ttl_ms=3000, batch_size=200)
    stop_projector, stop_load = asyncio.Event(), asyncio.Event()
    ctx = Context()
    sids = [f"s{i}" for i in range(SESSIONS)]
    acked = dict.fromkeys(sids, 0)  # messages the log acknowledged, per session
    stale: list[tuple[str, int, int]] = []
    reads = refused = during_switch = 0
    switching = False

    async def writer(sid: str) -> None:
        n = 0
        while not stop_load.is_set():
            n += 1
            await app.commands.add_messages(ctx, sid, [Message(role="user", content=f"{sid}-{n}")])
            acked[sid] += 1
            await asyncio.sleep(random.uniform(0.05, 0.3))  # a conversation's pace

    async def reader() -> None:
        nonlocal reads, refused, during_switch
        while not stop_load.is_set():
            sid = random.choice(sids)
            wanted = acked[sid]
            in_switch = switching
            try:
                page = await app.queries.messages(ctx, sid, limit=1, order="desc")
            except Unavailable:  # 503: NotCaughtUp, or the read model unavailable for a moment
                refused += 1
                continue
            reads += 1
            during_switch += in_switch
            if page.total < wanted:
                stale.append((sid, wanted, page.total))

    project_task = asyncio.create_task(projector.run(stop_projector))
    tasks: list[asyncio.Task[None]] = []
    try:
        for sid in sids:
            await app.commands.get_or_create_session(ctx, "u1", sid)
        await app.queries.session(ctx, sids[-1])  # projected: the load starts on a served model
        tasks = [asyncio.create_task(writer(sid)) for sid in sids]
        tasks += [asyncio.create_task(reader()) for _ in range(8)]
        await asyncio.sleep(1.0)
        for _ in range(REBUILDS):
            switching = True
            started = time.monotonic()
            await rebuild(rebuilt, log, batch=100, resume=False)
            switching = False
            assert time.monotonic() - started < 60  # a rebuild converges under load
            await asyncio.sleep(0.7)  # reads after the switch, while the projector goes on
        stop_load.set()
        await asyncio.gather(*tasks)
        # The final state is exact: every acknowledged message, once.
        for sid in sids:
            page = await app.queries.messages(ctx, sid)
            assert page.total == acked[sid]
            assert [m.content for m in page.messages] == [f"{sid}-{n}" for n in range(1, acked[sid] + 1)]
    finally:
        stop_load.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        stop_projector.set()
        await asyncio.wait_for(project_task, 30)
        for rm in (served, worker_model, rebuilt):
            await rm.close()
        await delete_prefix(log.redis, key_prefix)
        await log.close()
    print(
        f"\nreads: {reads} ({during_switch} during a rebuild), refused (503): {refused}, stale: {len(stale)}"
    )
    assert reads > 200 and during_switch > 50
    assert stale == [], (
        f"{len(stale)} of {reads} reads answered less than the log had acknowledged: {stale[:5]}"
    )

"""An entry that decodes and applies but that PostgreSQL cannot store (a value out of a column's range, as a
raw publisher of an older script could write) is dead-lettered like any poison entry; the projector does not
stop, and the entries around it are applied. Real Redis and PostgreSQL."""

from __future__ import annotations

from consumers.projector import Projector
from events import EventLog, encode_event, partition_of
from projections.api import AuditFilter

from ..events.factories import added, created, msg
from .pg import open_pg_read_model
from .test_pg_faults import real_log  # noqa: F401  (fixture)


async def test_a_row_postgres_refuses_is_dead_lettered_and_the_rest_applied(
    real_log: EventLog,  # noqa: F811
    pg_schema: str,
) -> None:
    log = real_log
    await log.append([created("s1", "alice")])
    await log.append([added("s1", msg("user", "before"))])
    p = partition_of("default", "session", "s1", log.partitions)
    # Written around the script, as an old publisher could: a timestamp no bigint column holds.
    huge = encode_event(added("s1", msg("user", "huge", timestamp=2**63 + 5)))
    state = await log.aggregate("default", "session", "s1")
    fields = {"type": "session.messages_added.v1", "version": str(state.version + 1), "event": huge}
    bad = (await log.redis.xadd(log.keys.log(p), fields)).decode()
    await log.redis.hset(log.keys.aggregate(p, "default", "session", "s1"), "v", state.version + 1)
    await log.append([added("s1", msg("user", "after"))])

    rm = await open_pg_read_model(pg_schema)
    try:
        worker = Projector(log, rm, worker_id="w", max_attempts=2, batch_size=100, backoff_initial_s=0.01)
        stats = await worker.run_until_caught_up(timeout_s=60)
        letters = await rm.dead_letters()
        assert [(d.partition, d.position) for d in letters] == [(p, bad)]
        assert "could not be stored" in letters[0].error
        assert stats.dead_lettered == 1
        page = await rm.get_messages("default", "s1")
        assert [m.content for m in page.messages] == ["before", "after"]
        audit = await rm.audit(AuditFilter(session_id="s1"))
        assert len(audit.events) == 3  # created, before, after: the refused entry is a dead letter only
    finally:
        await rm.close()

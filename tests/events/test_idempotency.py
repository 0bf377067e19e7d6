"""Idempotency per event id (docs/events.md "Retries and event ids"), on fakeredis and the real Redis.

Every event id of an append is checked: all known, each from an append to this aggregate, is a retry (the
first result, nothing written); known and new ids mixed, or an id another aggregate's append used, is
refused with ``event_id_reused`` naming the ids, and writes nothing."""

from __future__ import annotations

import msgspec
import pytest

from events import DuplicateEventId, Event, EventLog, partition_of

from .factories import added, created, msg, saved


async def stream_len(log: EventLog, partition: int) -> int:
    return int(await log.redis.xlen(log.keys.log(partition)))


async def known(log: EventLog, partition: int, event: Event) -> bool:
    return bool(await log.redis.exists(log.keys.idempotency(partition, event.tenant, str(event.id))))


def same_partition_sessions(log: EventLog) -> tuple[str, str]:
    """Two session ids of one partition (the idempotency keys are per partition and tenant)."""
    first = partition_of("default", "session", "s0", log.partitions)
    for n in range(1, 1000):
        if partition_of("default", "session", f"s{n}", log.partitions) == first:
            return "s0", f"s{n}"
    raise AssertionError("no two sessions share a partition")


async def test_a_known_id_beside_a_new_one_is_refused_and_nothing_is_written(event_log: EventLog) -> None:
    await event_log.append([created("s1", "alice")])
    old = added("s1", msg("user", "old"))
    first = await event_log.append([old])
    new = added("s1", msg("user", "new"))
    for batch in ([old, new], [new, old]):
        with pytest.raises(DuplicateEventId) as err:
            await event_log.append(batch)
        assert err.value.code == "event_id_reused"
        assert err.value.details == {"event_ids": [str(old.id)], "new_event_ids": [str(new.id)]}
        assert str(old.id) in err.value.message and str(new.id) in err.value.message
    assert await stream_len(event_log, first.partition) == 2
    assert not await known(event_log, first.partition, new)
    state = await event_log.aggregate("default", "session", "s1")
    assert (state.version, state.message_count) == (2, 1)
    # The new event on its own is appended, once.
    r = await event_log.append([new])
    assert r.appended and not r.duplicate and r.version == 3


async def test_a_first_id_reused_on_another_session_is_refused(event_log: EventLog) -> None:
    a, b = same_partition_sessions(event_log)
    made = created(a, "alice")
    first = await event_log.append([made])
    reuse = msgspec.structs.replace(created(b, "bob"), id=made.id)
    with pytest.raises(DuplicateEventId) as err:
        await event_log.append([reuse])
    assert err.value.code == "event_id_reused"
    assert err.value.details == {"event_ids": [str(made.id)]}
    assert not (await event_log.aggregate("default", "session", b)).exists  # nothing created
    assert await stream_len(event_log, first.partition) == 1
    # A later id of the batch reused from the other session: refused the same way, all ids known or not.
    await event_log.append([created(b, "bob")])
    hi = added(a, msg("user", "hi"))
    await event_log.append([hi])
    with pytest.raises(DuplicateEventId) as err:
        await event_log.append([msgspec.structs.replace(added(b, msg("user", "x")), id=hi.id)])
    assert err.value.details == {"event_ids": [str(hi.id)]}


async def test_a_retried_batch_returns_the_first_result(event_log: EventLog) -> None:
    await event_log.append([created("s1", "alice")])
    batch = [
        added("s1", msg("user", "one")),
        added("s1", msg("assistant", "two")),
        saved("alice", "k", 1, "s1"),
    ]
    first = await event_log.append(batch)
    assert first.appended and first.version == 4
    for retry in (batch, batch[1:], [batch[2], batch[0]]):  # the same append, whole or in part
        again = await event_log.append(retry)
        assert again.duplicate and again.appended  # the first result, as it was
        assert (again.version, again.position, again.event_ids, again.message_count) == (
            first.version,
            first.position,
            first.event_ids,
            first.message_count,
        )
    assert await stream_len(event_log, first.partition) == 4


async def test_ids_of_several_earlier_appends_of_one_aggregate_are_a_retry(event_log: EventLog) -> None:
    """Nothing is new and nothing belongs elsewhere: nothing to write, the first id's result is the answer."""
    await event_log.append([created("s1", "alice")])
    one, two = added("s1", msg("user", "one")), added("s1", msg("user", "two"))
    r1 = await event_log.append([one])
    await event_log.append([two])
    again = await event_log.append([one, two])
    assert again.duplicate and (again.version, again.event_ids) == (r1.version, r1.event_ids)
    assert await stream_len(event_log, r1.partition) == 3


async def test_a_result_stored_without_its_aggregate_is_taken_as_this_aggregates(event_log: EventLog) -> None:
    """An id stored by the earlier script (no "aggregate" in the result) still answers a plain retry."""
    await event_log.append([created("s1", "alice")])
    event = added("s1", msg("user", "hi"))
    first = await event_log.append([event])
    key = event_log.keys.idempotency(first.partition, "default", str(event.id))
    raw = await event_log.redis.get(key)
    assert isinstance(raw, bytes)
    stored = msgspec.json.decode(raw)
    assert stored["aggregate"] == "default:session:s1"
    del stored["aggregate"]
    await event_log.redis.set(key, msgspec.json.encode(stored), ex=60)
    again = await event_log.append([event])
    assert again.duplicate and again.version == first.version


async def test_append_batch_refuses_a_mixed_append_in_place(event_log: EventLog) -> None:
    await event_log.append([created("s1", "alice")])
    old = added("s1", msg("user", "old"))
    await event_log.append([old])
    new, other = added("s1", msg("user", "new")), added("s1", msg("user", "other"))
    results = await event_log.append_batch([[old, new], [old], [other]])
    assert isinstance(results[0], DuplicateEventId) and results[0].code == "event_id_reused"
    assert not isinstance(results[1], Exception) and results[1].duplicate
    assert not isinstance(results[2], Exception) and results[2].appended and results[2].version == 3

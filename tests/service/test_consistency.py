"""Read-your-writes: positions, and the bounded wait on the read model's checkpoints."""

from __future__ import annotations

import asyncio

import fakeredis
import pytest

from consumers.projector import Projector
from events import EventLog, LogSettings, SessionCreated, SessionCreatedPayload
from projections.memory import InMemoryReadModel
from service.consistency import (
    Consistency,
    format_positions,
    merge_positions,
    parse_positions,
)
from service.errors import BadRequest, NotCaughtUp


def test_positions_round_trip_and_merge_keeps_the_later_one() -> None:
    text = "3:1700000000000-2,0:1700000000005-0"
    parsed = parse_positions(text)
    assert parsed == {3: "1700000000000-2", 0: "1700000000005-0"}
    assert format_positions(parsed) == "0:1700000000005-0,3:1700000000000-2"
    assert parse_positions("3:1-2,3:1-10,3:1-9") == {3: "1-10"}  # numeric, not string, order
    merged = merge_positions({3: "5-0", 4: "9-0"}, {3: "4-9", 4: "10-0", 5: None})
    assert merged == {3: "5-0", 4: "10-0"}
    assert parse_positions(None) == {} and parse_positions("") == {}


@pytest.mark.parametrize("bad", ["x", "3", "3:", "3:12", "a:1-2", "3:1-2;4:1-2", "-1:1-2"])
def test_malformed_positions_are_refused(bad: str) -> None:
    with pytest.raises(BadRequest) as e:
        parse_positions(bad)
    assert e.value.code == "invalid_position"


async def _one_event(log: EventLog, sid: str) -> tuple[int, str]:
    event = SessionCreated(
        aggregate_kind="session", aggregate_id=sid, payload=SessionCreatedPayload(user_id="u")
    )
    result = await log.append([event])
    assert result.position is not None
    return result.partition, result.position


async def _project(log: EventLog, model: object, partition: int) -> None:
    entries = await log.read(partition)
    await model.apply_batch(partition, entries, expected=None, epoch=1)  # type: ignore[attr-defined]


@pytest.fixture
async def log(key_prefix: str):  # type: ignore[no-untyped-def]
    event_log = EventLog(fakeredis.FakeAsyncRedis(), LogSettings(prefix=key_prefix, partitions=4))
    await event_log.setup()
    yield event_log
    await event_log.close()


async def test_a_wait_times_out_with_a_retryable_error_when_nothing_projects(log: EventLog) -> None:
    p, pos = await _one_event(log, "s1")
    consistency = Consistency(InMemoryReadModel(), timeout_s=0.02)
    with pytest.raises(NotCaughtUp) as e:
        await consistency.wait({p: pos})
    assert e.value.code == "read_model_behind" and e.value.details["partitions"] == [p]
    await consistency.wait({})  # nothing to wait for
    await consistency.wait({p: None})  # an aggregate the log never had


async def test_an_in_process_projector_wakes_the_waiters(log: EventLog) -> None:
    p, pos = await _one_event(log, "s1")
    model = InMemoryReadModel()
    consistency = Consistency(model, timeout_s=30)
    waiters = [asyncio.create_task(consistency.wait({p: pos})) for _ in range(5)]
    await asyncio.sleep(0)
    assert not any(w.done() for w in waiters)
    # The projector's commit callback is what wakes them (service.app wires it to Consistency.notify).
    commits: list[tuple[int, str]] = []

    def on_commit(partition: int, position: str) -> None:
        commits.append((partition, position))
        consistency.notify(partition, position)

    await Projector(log, model, on_commit=on_commit).run_until_caught_up(timeout_s=10)
    assert commits == [(p, pos)]
    await asyncio.wait_for(asyncio.gather(*waiters), 10)
    assert consistency.missing({p: pos}) == {}
    assert (await model.get_session("default", "s1")) is not None


async def test_an_external_projector_is_seen_by_polling(log: EventLog) -> None:
    p, pos = await _one_event(log, "s1")
    model = InMemoryReadModel()
    consistency = Consistency(model, timeout_s=30)
    waiter = asyncio.create_task(consistency.wait({p: pos}))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    await _project(log, model, p)  # no notification: only the checkpoint moves
    await asyncio.wait_for(waiter, 10)
    later_p, later = await _one_event(log, "s2")
    if later_p == p:
        assert consistency.missing({p: later}) == {p: later}


async def test_a_cancelled_reader_does_not_cancel_the_readers_sharing_its_query(log: EventLog) -> None:
    p, pos = await _one_event(log, "s1")
    model = InMemoryReadModel()
    started = asyncio.Event()
    release = asyncio.Event()
    real_checkpoints = model.checkpoints

    async def slow_checkpoints(projection: str = "read_models"):  # type: ignore[no-untyped-def]
        started.set()
        await release.wait()
        return await real_checkpoints(projection)

    model.checkpoints = slow_checkpoints  # type: ignore[method-assign]
    consistency = Consistency(model, timeout_s=30)
    first = asyncio.create_task(consistency.wait({p: pos}))
    await started.wait()
    second = asyncio.create_task(consistency.wait({p: pos}))
    await asyncio.sleep(0.01)  # the second now shares the first's query
    first.cancel()
    await asyncio.sleep(0.01)
    assert not second.done()
    model.checkpoints = real_checkpoints  # type: ignore[method-assign]
    release.set()
    await _project(log, model, p)
    await asyncio.wait_for(second, 10)
    assert first.cancelled()

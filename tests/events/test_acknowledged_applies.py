"""Whatever the log acknowledges, the projection applies; the rest is refused at the append with a code.

Issue 15 item 7 (and issue 14 item 1): the log took events that the projector then dead-lettered, so a
client was told "appended" and the data never appeared: an event id already used in another partition (the
archive held event ids unique across partitions, the log dedups them per partition and for a window), and
publisher JSON the append script accepted but the strict decoder did not (a ``timestamp`` of ``1.5``).

Each case runs on fakeredis and the real Redis (``event_log``) and projects into both read models.
"""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
import pytest
from redis.exceptions import ResponseError

from events import EventLog, InvalidEvent, decode_entry, encode_event, partition_of
from events.log import load_script, parse_reply, plan_append, translate_error
from events.schema import Event
from projections.api import ReadModel
from tests.projections.helpers import project

from .factories import added, call, created, deleted, msg, saved


def other_partition_session(log: EventLog, than: str) -> str:
    p = partition_of("default", "session", than, log.partitions)
    return next(
        sid
        for sid in (f"s-{i}" for i in range(1000))
        if partition_of("default", "session", sid, log.partitions) != p
    )


async def evalsha(log: EventLog, keys: list[str], args: list[Any]) -> Any:
    await log.redis.script_load(load_script())
    try:
        return parse_reply(await log.redis.evalsha(log._sha, len(keys), *keys, *args))
    except ResponseError as e:
        raise translate_error(e) from e


async def publish_raw(log: EventLog, typed: list[Event], docs: list[dict[str, Any]]) -> Any:
    """What a publisher in another language sends: the keys of ``typed``, the JSON of ``docs``."""
    plan = plan_append(log.keys, log.partitions, typed)
    return await evalsha(log, plan.keys, [plan.args[0], *(msgspec.json.encode(d) for d in docs)])


def doc(event: Event) -> dict[str, Any]:
    out: dict[str, Any] = msgspec.json.decode(encode_event(event))
    return out


async def assert_all_applied(log: EventLog, rm: ReadModel) -> None:
    await project(log, rm)
    assert await rm.dead_letters() == []
    heads = await log.heads()
    checkpoints = await rm.checkpoints()
    for p, head in heads.items():
        if head is not None:
            assert checkpoints[p].position == head


async def test_an_event_id_used_in_two_partitions_is_applied_in_both(
    event_log: EventLog, read_model: ReadModel
) -> None:
    first = created("s-a", "alice")
    sid = other_partition_session(event_log, "s-a")
    second = msgspec.structs.replace(created(sid, "bob"), id=first.id)
    a = await event_log.append([first])
    b = await event_log.append([second])
    assert a.appended and b.appended and a.partition != b.partition  # the log acknowledged both
    await assert_all_applied(event_log, read_model)
    assert (await read_model.get_session("default", "s-a")) is not None
    found = await read_model.get_session("default", sid)
    assert found is not None and found.user_id == "bob"


async def test_an_event_id_reused_after_the_dedup_window_is_applied(
    event_log: EventLog, read_model: ReadModel
) -> None:
    await event_log.append([created("s1", "alice")])
    first = added("s1", msg("user", "one"))
    r = await event_log.append([first])
    await event_log.redis.delete(event_log.keys.idempotency(r.partition, "default", str(first.id)))  # expired
    again = msgspec.structs.replace(added("s1", msg("user", "two")), id=first.id)
    assert (await event_log.append([again])).appended
    await assert_all_applied(event_log, read_model)
    page = await read_model.get_messages("default", "s1")
    assert [m.content for m in page.messages] == ["one", "two"]


async def test_publisher_json_the_script_takes_is_applied(event_log: EventLog, read_model: ReadModel) -> None:
    """JSON a publisher in another language writes (nulls for defaults, 1.0 for an integer, [] for an
    empty object, a version or recorded_at of its own in the envelope): acknowledged, so applied."""
    c = created("s1", "alice")
    d = doc(c)
    d["payload"]["metadata"] = []  # cjson cannot tell [] from {}
    d["actor"] = None
    d["tenant"] = None
    d["version"] = "x"
    d["recorded_at"] = "whenever"
    assert (await publish_raw(event_log, [c], [d])).appended
    m = added(
        "s1",
        msg("user", "a", timestamp=5),
        msg("assistant", None, tool_calls=[call("c1")], timestamp=6),
        msg("tool", "r", tool_call_id="c1"),
    )
    d = doc(m)
    msgs = d["payload"]["messages"]
    msgs[0]["timestamp"] = 1700000000000.0  # an integral float, as Python's json or a float64 writes it
    msgs[0]["metadata"] = []
    msgs[0]["name"] = None
    msgs[1]["tool_calls"][0]["type"] = None
    msgs[1]["tool_calls"][0]["function"]["arguments"] = None
    msgs[1]["timestamp"] = None
    raw = msgspec.json.encode(d).replace(b"1700000000000.0", b"1.7e12")
    assert (await publish_raw(event_log, [m], [msgspec.json.decode(raw)])).appended
    s = saved("alice", "k", None, session="s1")
    ds = doc(s)
    ds["payload"]["value"] = None
    assert (await publish_raw(event_log, [s], [ds])).appended
    x = deleted("s1")
    dx = doc(x)
    dx["payload"] = None
    assert (await publish_raw(event_log, [x], [dx])).appended

    for entries in [await event_log.read(p) for p in range(event_log.partitions)]:
        for entry in entries:
            decode_entry(entry)  # every acknowledged entry reads
    await assert_all_applied(event_log, read_model)
    session = await read_model.get_session("default", "s1")
    assert session is not None and session.deleted and session.metadata == {} and session.version == 4


async def test_messages_of_publisher_json_read_back(event_log: EventLog, read_model: ReadModel) -> None:
    await event_log.append([created("s1", "alice")])
    m = added("s1", msg("user", "a"), msg("assistant", None, tool_calls=[call("c1")]))
    d = doc(m)
    d["payload"]["messages"][0]["timestamp"] = 1.7e12
    d["payload"]["messages"][1]["timestamp"] = None
    d["payload"]["messages"][1]["tool_calls"][0]["function"]["arguments"] = None
    assert (await publish_raw(event_log, [m], [d])).appended
    await assert_all_applied(event_log, read_model)
    page = await read_model.get_messages("default", "s1")
    assert page.messages[0].timestamp == 1_700_000_000_000 and page.messages[1].timestamp > 0
    calls = page.messages[1].tool_calls
    assert calls is not None and calls[0]["id"] == "c1" and calls[0]["function"]["name"] == "lookup"


def _with_timestamp(value: Any) -> tuple[list[Event], list[dict[str, Any]]]:
    m = added("s1", msg("user", "a"))
    d = doc(m)
    d["payload"]["messages"][0]["timestamp"] = value
    return [m], [d]


@pytest.mark.parametrize("value", [1.5, -0.5, 1e-3, 2.0**53, "5", True, [1]])
async def test_a_timestamp_that_is_no_whole_number_is_refused(event_log: EventLog, value: Any) -> None:
    await event_log.append([created("s1", "alice")])
    typed, docs = _with_timestamp(value)
    with pytest.raises(InvalidEvent) as info:
        await publish_raw(event_log, typed, docs)
    assert info.value.code == "invalid_timestamp", info.value
    assert info.value.details.get("index") == 0
    assert await event_log.redis.xlen(event_log.keys.log(partition_of("default", "session", "s1", 8))) == 1


@pytest.mark.parametrize(
    "when",
    [
        "2024-02-30T00:00:00Z",
        "2023-02-29T00:00:00Z",
        "2024-13-01T00:00:00Z",
        "2024-01-01T24:00:00Z",
        "2024-01-01T23:59:60Z",
        "2024-01-01T00:00Z",
        "2024-01-01T00:00:00.Z",
        "2024-01-01T00:00:00+24:00",
        "0000-01-01T00:00:00Z",
        "2024-01-01T00:00:00",
    ],
)
async def test_an_occurred_at_the_decoder_cannot_read_is_refused(event_log: EventLog, when: str) -> None:
    c = created("s1", "alice")
    d = doc(c)
    d["occurred_at"] = when
    with pytest.raises(InvalidEvent) as info:
        await publish_raw(event_log, [c], [d])
    assert info.value.code == "invalid_occurred_at"


@pytest.mark.parametrize(
    "when", ["2024-02-29T23:59:59Z", "2024-01-01T00:00:00.123456789+05:30", "9999-12-31T23:59:59-00:00"]
)
async def test_an_occurred_at_the_decoder_reads_is_taken(
    event_log: EventLog, read_model: ReadModel, when: str
) -> None:
    c = created(f"s-{uuid.uuid4().hex[:6]}", "alice")
    d = doc(c)
    d["occurred_at"] = when
    assert (await publish_raw(event_log, [c], [d])).appended
    await assert_all_applied(event_log, read_model)


async def test_other_shapes_the_decoder_cannot_read_are_refused(event_log: EventLog) -> None:
    await event_log.append([created("s1", "alice")])
    m = added("s1", msg("assistant", None, tool_calls=[call("c1")]))
    d = doc(m)
    d["payload"]["messages"][0]["tool_calls"] = {"c1": d["payload"]["messages"][0]["tool_calls"][0]}
    with pytest.raises(InvalidEvent) as info:
        await publish_raw(event_log, [m], [d])
    assert info.value.code == "invalid_tool_calls"
    x = deleted("s1")
    dx = doc(x)
    dx["payload"] = {"reason": 5}
    with pytest.raises(InvalidEvent) as info:
        await publish_raw(event_log, [x], [dx])
    assert info.value.code == "invalid_event"
    # Bytes that are not UTF-8 (cjson takes them; JSON and the read models do not).
    cafe = added("s1", msg("user", "caf\u00e9"))
    plan = plan_append(event_log.keys, event_log.partitions, [cafe])
    bad = encode_event(cafe).replace("\u00e9".encode(), b"\xe9")
    with pytest.raises(InvalidEvent) as info:
        await evalsha(event_log, plan.keys, [plan.args[0], bad])
    assert info.value.code == "invalid_json"  # fakeredis's cjson refuses it itself; Redis' takes it
    good = added("s1", msg("user", "caf\u00e9 \u6f22 \U0001f600"))
    assert (await event_log.append([good])).appended


async def test_numbers_and_nesting_the_decoder_cannot_read_are_refused(event_log: EventLog) -> None:
    """fakeredis' cjson (the embedded log) wrote Infinity back where Redis' refuses it; msgspec refuses JSON
    nested past ~1000 levels where cjson takes 1000: both were acknowledged, then dead-lettered."""
    s = saved("alice", "k", 1)
    plan = plan_append(event_log.keys, event_log.partitions, [s])
    for value in (b"[1e400]", b'{"a": -1e400}', b"[" * 120 + b"]" * 120):
        data = encode_event(s).replace(b'"value":1', b'"value":' + value)
        with pytest.raises(InvalidEvent) as info:
            await evalsha(event_log, plan.keys, [plan.args[0], data])
        assert info.value.code == "invalid_json", value
    deep = b"[" * 90 + b"]" * 90
    data = encode_event(s).replace(b'"value":1', b'"value":' + deep)
    assert (await evalsha(event_log, plan.keys, [plan.args[0], data])).appended

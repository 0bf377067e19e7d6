"""The event log's contract, run against fakeredis and the real Redis (the ``event_log`` fixture)."""

from __future__ import annotations

import asyncio

import msgspec
import pytest
from redis.crc import key_slot

from events import (
    Conflict,
    DuplicateEventId,
    EventLog,
    InvalidEvent,
    LimitExceeded,
    LogSettings,
    NotFound,
    PermissionDenied,
    SessionDeleted,
    decode_entry,
    encode_event,
    partition_of,
)
from events.errors import ConfigurationError
from events.keys import Keys
from events.log import plan_append, translate_error
from events.settings import Limits

from .factories import added, call, cleared, created, deleted, mem_deleted, msg, saved


async def stream_len(log: EventLog, partition: int) -> int:
    return int(await log.redis.xlen(log.keys.log(partition)))


# --- sessions ---------------------------------------------------------------------------------------------


async def test_create_then_resume_returns_the_same_session(event_log: EventLog) -> None:
    first = await event_log.append([created("s1", "alice")])
    assert first.appended and first.version == 1 and first.position
    again = await event_log.append([created("s1", "alice")])
    assert not again.appended and again.version == 1 and again.position == first.position
    assert await stream_len(event_log, first.partition) == 1


async def test_another_users_session_id_is_refused(event_log: EventLog) -> None:
    await event_log.append([created("s1", "alice")])
    with pytest.raises(PermissionDenied) as err:
        await event_log.append([created("s1", "mallory")])
    assert err.value.code == "session_owned_by_another_user"
    assert "alice" not in err.value.message  # the refusal does not leak the owner


async def test_deleted_session_refuses_messages_and_reuse(event_log: EventLog) -> None:
    await event_log.append([created("s1", "alice")])
    await event_log.append([deleted("s1")])
    with pytest.raises(SessionDeleted):
        await event_log.append([added("s1", msg("user", "hi"))])
    with pytest.raises(SessionDeleted):
        await event_log.append([created("s1", "alice")])
    with pytest.raises(SessionDeleted):
        await event_log.append([deleted("s1")])


async def test_messages_need_an_existing_session(event_log: EventLog) -> None:
    with pytest.raises(NotFound) as err:
        await event_log.append([added("ghost", msg("user", "hi"))])
    assert err.value.code == "session_not_found"
    with pytest.raises(NotFound):
        await event_log.append([deleted("ghost")])
    assert sum((await event_log.lengths()).values()) == 0


async def test_versions_are_contiguous_and_messages_counted(event_log: EventLog) -> None:
    await event_log.append([created("s1", "alice")])
    r = None
    for i in range(5):
        r = await event_log.append([added("s1", msg("user", f"m{i}"), msg("assistant", f"a{i}"))])
        assert r.version == i + 2
    assert r is not None and r.message_count == 10
    state = await event_log.aggregate("default", "session", "s1")
    assert (state.version, state.user_id, state.message_count, state.position) == (6, "alice", 10, r.position)
    entries = await event_log.read(r.partition)
    assert [e.version for e in entries] == [1, 2, 3, 4, 5, 6]
    events = [decode_entry(e) for e in entries]
    assert [e.version for e in events] == [1, 2, 3, 4, 5, 6]
    assert all(e.recorded_at is not None for e in events)


async def test_tenants_are_separate_aggregates(event_log: EventLog) -> None:
    await event_log.append([created("s1", "alice", tenant="acme")])
    r = await event_log.append([created("s1", "bob", tenant="globex")])
    assert r.appended and r.version == 1
    with pytest.raises(InvalidEvent) as err:
        await event_log.append([created("s2", "bob", tenant="a:b")])
    assert err.value.code == "invalid_tenant"


# --- tool calls -------------------------------------------------------------------------------------------


async def test_tool_results_must_answer_an_earlier_call(event_log: EventLog) -> None:
    await event_log.append([created("s1", "alice")])
    with pytest.raises(InvalidEvent) as err:
        await event_log.append([added("s1", msg("tool", "42", tool_call_id="nope"))])
    assert err.value.code == "unknown_tool_call" and err.value.details["tool_call_id"] == "nope"
    # A call and its answer in one batch are fine; so is an answer in a later append.
    await event_log.append(
        [
            added(
                "s1",
                msg("assistant", None, tool_calls=[call("c1"), call("c2")]),
                msg("tool", "r1", tool_call_id="c1"),
            )
        ]
    )
    await event_log.append([added("s1", msg("tool", "r2", tool_call_id="c2"))])
    with pytest.raises(InvalidEvent) as err:
        await event_log.append([added("s1", msg("tool", "again", tool_call_id="c1"))])
    assert err.value.code == "tool_call_already_answered"


async def test_tool_call_ids_are_unique_within_a_session(event_log: EventLog) -> None:
    await event_log.append([created("s1", "alice")])
    await event_log.append([added("s1", msg("assistant", None, tool_calls=[call("c1")]))])
    with pytest.raises(InvalidEvent) as err:
        await event_log.append([added("s1", msg("assistant", None, tool_calls=[call("c1")]))])
    assert err.value.code == "duplicate_tool_call_id"
    with pytest.raises(InvalidEvent) as err:
        await event_log.append([added("s1", msg("assistant", None, tool_calls=[call("c7"), call("c7")]))])
    assert err.value.code == "duplicate_tool_call_id"
    # Another session may reuse the id.
    await event_log.append([created("s2", "alice")])
    await event_log.append([added("s2", msg("assistant", None, tool_calls=[call("c1")]))])


@pytest.mark.parametrize(
    ("message", "code"),
    [
        (msg("tool", "x"), "tool_call_id_required"),
        (msg("user", "x", tool_calls=[call("c1")]), "tool_calls_not_allowed"),
        (msg("user", "x", tool_call_id="c1"), "unexpected_tool_call_id"),
        (msg("assistant", None), "missing_content"),
    ],
)
async def test_malformed_messages_are_refused(event_log: EventLog, message: object, code: str) -> None:
    await event_log.append([created("s1", "alice")])
    with pytest.raises(InvalidEvent) as err:
        await event_log.append([added("s1", message)])  # type: ignore[arg-type]
    assert err.value.code == code


async def test_a_refused_batch_writes_nothing(event_log: EventLog) -> None:
    r = await event_log.append([created("s1", "alice")])
    before = await stream_len(event_log, r.partition)
    batch = added(
        "s1",
        msg("assistant", None, tool_calls=[call("c1")]),
        msg("user", "ok"),
        msg("tool", "bad", tool_call_id="zzz"),
    )
    with pytest.raises(InvalidEvent):
        await event_log.append([batch])
    assert await stream_len(event_log, r.partition) == before
    state = await event_log.aggregate("default", "session", "s1")
    assert state.version == 1 and state.message_count == 0
    # c1 was not registered by the refused batch, so it can be used now.
    await event_log.append([added("s1", msg("assistant", None, tool_calls=[call("c1")]))])


# --- limits -----------------------------------------------------------------------------------------------


async def test_limits_are_enforced_by_the_script(redis_client, key_prefix: str) -> None:  # type: ignore[no-untyped-def]
    limits = Limits(
        max_content_bytes=10,
        max_messages=2,
        max_key_length=5,
        max_value_bytes=20,
        max_metadata_bytes=30,
        max_memory_keys=2,
        max_tool_calls=1,
    )
    log = EventLog(redis_client, LogSettings(prefix=key_prefix, partitions=4, limits=limits))
    await log.setup()
    await log.append([created("s1", "alice")])
    cases = [
        (added("s1", msg("user", "x" * 11)), "content_too_large"),
        (added("s1", msg("user", "a"), msg("user", "b"), msg("user", "c")), "too_many_messages"),
        (added("s1", msg("assistant", None, tool_calls=[call("c1"), call("c2")])), "too_many_tool_calls"),
        (saved("alice", "k" * 6, 1), "key_too_long"),
        (saved("alice", "k", "v" * 30), "value_too_large"),
        (created("s2", "alice", blob="z" * 40), "metadata_too_large"),
    ]
    for event, code in cases:
        with pytest.raises(LimitExceeded) as err:
            await log.append([event])
        assert err.value.code == code and err.value.details["limit"] > 0
    await log.append([saved("alice", "a", 1)])
    await log.append([saved("alice", "b", 2)])
    await log.append([saved("alice", "a", 3)])  # overwriting an existing key is not a new key
    with pytest.raises(LimitExceeded) as err:
        await log.append([saved("alice", "c", 3)])
    assert err.value.code == "too_many_memory_keys"
    from tests.fix_redis import delete_prefix

    await delete_prefix(redis_client, key_prefix)


# --- memory -----------------------------------------------------------------------------------------------


async def test_memory_scopes_deletes_and_clears(event_log: EventLog) -> None:
    await event_log.append([saved("alice", "allergy", ["penicillin"])])
    await event_log.append([saved("alice", "diet", {"vegan": True})])
    r = await event_log.append([saved("alice", "diet", {"vegan": False})])
    assert r.version == 3
    assert (await event_log.append([mem_deleted("alice", "nope")])).appended is False
    gone = await event_log.append([mem_deleted("alice", "diet")])
    assert gone.appended and gone.removed == 1
    wiped = await event_log.append([cleared("alice")])
    assert wiped.removed == 1
    assert (await event_log.append([cleared("alice")])).appended is False


async def test_session_scoped_memory_needs_a_live_session_of_that_user(event_log: EventLog) -> None:
    with pytest.raises(NotFound) as err:
        await event_log.append([saved("alice", "k", 1, session="s1")])
    assert err.value.code == "memory_session_not_found"
    await event_log.append([created("s1", "alice")])
    with pytest.raises(PermissionDenied) as err:
        await event_log.append([saved("bob", "k", 1, session="s1")])
    assert err.value.code == "memory_session_not_owned"
    r = await event_log.append([saved("alice", "k", 1, session="s1")])
    assert r.appended and r.version == 2
    assert await event_log.scoped_sessions("default", "alice") == ["s1"]
    await event_log.append([deleted("s1")])
    with pytest.raises(SessionDeleted):
        await event_log.append([saved("alice", "k", 2, session="s1")])


async def test_memory_events_must_name_their_aggregate(event_log: EventLog) -> None:
    wrong = msgspec.structs.replace(saved("alice", "k", 1), aggregate_id="bob")
    with pytest.raises(InvalidEvent) as err:
        await event_log.append([wrong])
    assert err.value.code == "wrong_aggregate"


# --- versions and idempotency -----------------------------------------------------------------------------


async def test_expected_version_conflict_carries_the_current_version(event_log: EventLog) -> None:
    await event_log.append([created("s1", "alice")], expected_version=0)
    await event_log.append([added("s1", msg("user", "hi"))], expected_version=1)
    with pytest.raises(Conflict) as err:
        await event_log.append([added("s1", msg("user", "late"))], expected_version=1)
    assert err.value.code == "version_conflict"
    assert err.value.details == {"current_version": 2, "expected_version": 1}
    with pytest.raises(Conflict):
        await event_log.append([created("s1", "alice")], expected_version=0)


async def test_a_retried_append_returns_the_first_result(event_log: EventLog) -> None:
    await event_log.append([created("s1", "alice")])
    event = added("s1", msg("user", "hi"))
    first = await event_log.append([event])
    for _ in range(3):
        again = await event_log.append([event])
        assert again.duplicate and again.version == first.version and again.position == first.position
        assert again.event_ids == first.event_ids
    assert await stream_len(event_log, first.partition) == 2


async def test_an_event_id_reused_in_another_append_is_refused(event_log: EventLog) -> None:
    await event_log.append([created("s1", "alice")])
    first = added("s1", msg("user", "hi"))
    await event_log.append([first])
    second = added("s1", msg("user", "other"))
    reuse = msgspec.structs.replace(added("s1", msg("user", "x")), id=first.id)
    with pytest.raises(DuplicateEventId):
        await event_log.append([second, reuse])
    with pytest.raises(DuplicateEventId):
        await event_log.append([second, second])


async def test_fifty_concurrent_writers_one_winner_per_version(event_log: EventLog) -> None:
    await event_log.append([created("s1", "alice")])
    winners: dict[int, int] = {}
    conflicts = 0

    async def writer(n: int) -> None:
        nonlocal conflicts
        for attempt in range(200):
            state = await event_log.aggregate("default", "session", "s1")
            try:
                r = await event_log.append(
                    [added("s1", msg("user", f"w{n}.{attempt}"))], expected_version=state.version
                )
            except Conflict as e:
                assert e.details["current_version"] > state.version
                conflicts += 1
                continue
            assert r.version not in winners
            winners[r.version] = n
            return
        raise AssertionError("writer starved")

    await asyncio.gather(*(writer(n) for n in range(50)))
    assert sorted(winners) == list(range(2, 52))
    assert sorted(winners.values()) == list(range(50))
    entries = await event_log.read(partition_of("default", "session", "s1", event_log.partitions))
    assert [e.version for e in entries] == list(range(1, 52))
    # Writers interleave at every await, so 50 of them racing on one version must have collided.
    assert conflicts > 0


# --- reading ----------------------------------------------------------------------------------------------


async def test_read_in_order_batched_and_blocking(event_log: EventLog) -> None:
    r = await event_log.append([created("s1", "alice")])
    for i in range(9):
        r = await event_log.append([added("s1", msg("user", f"m{i}"))])
    p = r.partition
    first = await event_log.read(p, count=4)
    rest = await event_log.read(p, after=first[-1].position, count=100)
    assert [e.version for e in first + rest] == list(range(1, 11))
    assert await event_log.read(p, after=rest[-1].position, count=10, block_ms=50) == []
    heads = await event_log.heads()
    assert heads[p] == r.position and sum(1 for h in heads.values() if h) == 1

    async def late_write() -> None:
        await asyncio.sleep(0.05)
        await event_log.append([added("s1", msg("user", "late"))])

    task = asyncio.create_task(late_write())
    got = await event_log.read(p, after=rest[-1].position, block_ms=5000)
    await task
    assert [e.version for e in got] == [11]
    many = await event_log.read_many({p: "0-0", (p + 1) % event_log.partitions: "0-0"}, count=100)
    assert list(many) == [p] and len(many[p]) == 11


# --- the script cannot be gone around ---------------------------------------------------------------------


async def test_the_script_checks_partition_keys_and_json(event_log: EventLog) -> None:
    plan = plan_append(event_log.keys, event_log.partitions, [created("s1", "alice")])
    script = event_log._script
    wrong_p = (plan.partition + 1) % event_log.partitions
    k = event_log.keys
    moved = [
        k.config(wrong_p),
        k.log(wrong_p),
        k.aggregate(wrong_p, "default", "session", "s1"),
        k.tool_calls(wrong_p, "default", "session", "s1"),
        k.memory_keys(wrong_p, "default", "session", "s1"),
    ] + [k.idempotency(wrong_p, "default", key.rsplit(":", 1)[1]) for key in plan.keys[5:]]

    async def code_of(keys: list[str], args: list[bytes | str]) -> str:
        from redis.exceptions import ResponseError

        with pytest.raises(ResponseError) as err:
            await script(keys=keys, args=args)
        return translate_error(err.value).code

    assert await code_of(moved, plan.args) == "partition_mismatch"
    assert await code_of([*plan.keys[:2], "x", *plan.keys[3:]], plan.args) == "keys_mismatch"
    assert await code_of(plan.keys, ["", b"{not json"]) == "invalid_json"
    bad_id = encode_event(created("s1", "alice")).replace(b'"id":"', b'"id":"X', 1)
    assert await code_of(plan.keys, ["", bad_id]) == "invalid_event_id"
    assert sum((await event_log.lengths()).values()) == 0


async def test_all_keys_of_one_append_share_one_cluster_slot(event_log: EventLog) -> None:
    events = [added(f"s{i}", msg("user", "x")) for i in range(50)] + [
        saved(f"u{i}", "k", 1) for i in range(50)
    ]
    events.append(saved("u1", "k", 1, session="s1"))
    for e in events:
        plan = plan_append(event_log.keys, event_log.partitions, [e])
        assert len({key_slot(key.encode()) for key in plan.keys}) == 1
        assert plan.scoped is None or len({key_slot(plan.scoped[0].encode())}) == 1


def test_the_scoped_set_is_in_the_users_slot_not_the_sessions() -> None:
    """Why the append script cannot write the scoped-sessions set on a cluster (docs/events.md): the set is
    in the user's memory partition, the session-scoped save in the session's, another slot in general."""
    log_keys, partitions = Keys("t"), 16
    user, session = (
        "u1",
        next(
            f"s{n}"
            for n in range(100)
            if partition_of("default", "session", f"s{n}", partitions)
            != partition_of("default", "memory", "u1", partitions)
        ),
    )
    plan = plan_append(log_keys, partitions, [saved(user, "k", 1, session=session)])
    assert plan.scoped is not None
    assert key_slot(plan.scoped[0].encode()) != key_slot(plan.keys[0].encode())


async def test_setup_refuses_another_partition_count(event_log: EventLog) -> None:
    other = EventLog(event_log.redis, LogSettings(prefix=event_log.settings.prefix, partitions=5))
    with pytest.raises(ConfigurationError) as err:
        await other.setup()
    assert err.value.code == "partition_count_mismatch"


async def test_an_unset_log_says_so(redis_client, key_prefix: str) -> None:  # type: ignore[no-untyped-def]
    log = EventLog(redis_client, LogSettings(prefix=key_prefix, partitions=2))
    with pytest.raises(ConfigurationError) as err:
        await log.append([created("s1", "alice")])
    assert err.value.code == "log_not_configured"


async def test_append_batch_pipelines_independent_appends(event_log: EventLog) -> None:
    await event_log.redis.script_flush()  # the pipeline must load the script itself
    results = await event_log.append_batch(
        [
            [created("s1", "alice")],
            [added("ghost", msg("user", "x"))],
            [created("s2", "bob")],
            [saved("alice", "k", 1)],
        ]
    )
    assert [type(r).__name__ for r in results] == ["AppendResult", "NotFound", "AppendResult", "AppendResult"]
    assert isinstance(results[1], NotFound) and results[1].code == "session_not_found"
    assert all(r.version == 1 for r in results if not isinstance(r, Exception))

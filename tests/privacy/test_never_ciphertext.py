"""Reads never return ciphertext (issue 15 item 8): a sealed value that cannot be opened, whatever the reason
(no key, another key, no known owner, a body that does not open), reads as erased, never as ``enc:v1:...``."""

from __future__ import annotations

import datetime as dt

import fakeredis
import httpx

from events.keys import Keys, partition_of
from projections.api import AuditRecord, MemoryRecord, MessageRecord
from service.app import Application
from service.keyring import DataKeys
from service.sealing import aad, seal_text, seal_value
from service.unsealing import Unsealer

from .erasure_helpers import CANARY, write_user

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def message(content: str | None, arguments: str | None = None) -> MessageRecord:
    calls = None
    if arguments is not None:
        calls = [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": arguments}}]
    return MessageRecord(
        seq=1, role="assistant", content=content, tool_calls=calls, timestamp=1, event_id="e"
    )


async def unsealer() -> tuple[Unsealer, DataKeys]:
    keys = DataKeys(fakeredis.FakeAsyncRedis(), Keys("t"))
    return Unsealer(keys), keys


async def test_a_message_with_no_known_owner_reads_as_erased() -> None:
    u, keys = await unsealer()
    key = await keys.for_write("default", "alice")
    where = aad("default", "alice", "session", "s1")
    rows = [message(seal_text(key, where, "hello"), arguments=seal_text(key, where, "{}")), message("plain")]
    opened = await u.messages("default", None, "s1", rows)
    assert "enc:v1:" not in str(opened)
    assert opened[0].content is None and opened[0].metadata == {"erased": True}
    assert opened[0].tool_calls is not None and opened[0].tool_calls[0]["function"]["arguments"] == ""
    assert opened[1].content == "plain"
    # With the owner, the same rows open.
    assert (await u.messages("default", "alice", "s1", rows))[0].content == "hello"


async def test_a_value_that_does_not_open_reads_as_erased() -> None:
    u, keys = await unsealer()
    key = await keys.for_write("default", "alice")
    forged = [
        f"enc:v1:{key.id}:!!notbase64",
        f"enc:v1:{key.id}:AAAA",
        "enc:v1:0123456789abcdef:AAAA",
        "enc:v1:",
    ]
    opened = await u.messages("default", "alice", "s1", [message(v) for v in forged])
    assert [m.content for m in opened] == [None] * len(forged)
    memory = {
        str(i): MemoryRecord(
            user_id="alice", session_id=None, key=str(i), value=v, version=1, created_at=T0, updated_at=T0
        )
        for i, v in enumerate(forged)
    }
    assert [r.value for r in (await u.memory("default", "alice", memory)).values()] == [None] * len(forged)


async def test_an_audit_record_with_no_user_reads_as_erased() -> None:
    u, keys = await unsealer()
    key = await keys.for_write("default", "alice")
    sealed = seal_value(key, aad("default", "alice", "memory", "alice"), {"x": 1})
    record = AuditRecord(
        partition=0,
        position="1-0",
        event_id="e",
        type="memory.saved.v1",
        tenant="default",
        aggregate_kind="memory",
        aggregate_id="alice",
        version=1,
        user_id=None,
        actor_kind="service",
        actor_id="x",
        correlation_id=None,
        causation_id=None,
        occurred_at=T0,
        recorded_at=T0,
        payload={"user_id": "alice", "key": "k", "value": sealed},
    )
    (opened,) = await u.audit([record])
    assert "enc:v1:" not in str(opened.payload)
    assert opened.payload["erased"] is True and opened.payload["value"] is None


async def test_a_log_that_lost_a_sessions_state_serves_no_ciphertext(
    application: Application, http: httpx.AsyncClient
) -> None:
    """The owner of a session came from the log's state alone; with that state gone the messages were served
    as the raw ciphertext. Now the read model's owner opens them."""
    await write_user(http, "frank", ["s-frank"])
    log = application.log
    p = partition_of("default", "session", "s-frank", log.partitions)
    await log.redis.delete(log.keys.aggregate(p, "default", "session", "s-frank"))
    r = await http.get("/v1/sessions/s-frank/messages")
    assert r.status_code == 200, r.text
    assert "enc:v1:" not in r.text
    assert r.json()["messages"][0]["content"] == f"{CANARY}-question-s-frank"

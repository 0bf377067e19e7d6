"""Erasure: canaries written for a user, ``forget-user``, then no canary in any read-model row, any API
response (HTTP and gRPC), a fresh rebuild or the Redis log, and the log's ciphertext cannot be opened.
On the embedded default and on the real Redis + PostgreSQL."""

from __future__ import annotations

import grpc
import httpx
import msgspec
import pytest

from events.codec import decode_entry
from events.schema import MemorySaved, MessagesAdded
from projections.rebuild import rebuild
from proto import sessions_pb2 as pb
from proto import sessions_pb2_grpc as pb_grpc
from service.app import Application
from service.request import Context
from service.sealing import Erased, aad, is_sealed, open_text

from .erasure_helpers import CANARY, dump_read_model, dump_redis, rows_of, secret, write_user


def _schema(backend: str, request: pytest.FixtureRequest) -> str | None:
    return str(request.getfixturevalue("pg_schema")) if backend == "real" else None


async def _http_responses(http: httpx.AsyncClient, user: str, sessions: list[str]) -> list[httpx.Response]:
    responses = [
        await http.get(f"/v1/users/{user}/sessions"),
        await http.get(f"/v1/users/{user}/memory"),
        await http.get("/v1/events", params={"user_id": user, "limit": 1000}),
        await http.get("/v1/events", params={"limit": 1000}),
    ]
    for sid in sessions:
        responses += [
            await http.get(f"/v1/sessions/{sid}"),
            await http.get(f"/v1/sessions/{sid}/messages"),
            await http.get(f"/v1/users/{user}/memory", params={"session_id": sid, "merged": "true"}),
            await http.get(f"/v1/sessions/{sid}/events", params={"limit": 1000}),
        ]
    return responses


async def _grpc_texts(stub: pb_grpc.SessionServiceStub, user: str, sessions: list[str]) -> list[str]:
    calls = [
        stub.GetMemory(pb.GetMemoryRequest(user_id=user)),
        stub.ListSessions(pb.ListSessionsRequest(user_id=user)),
        stub.GetEvents(pb.GetEventsRequest(user_id=user, limit=1000)),
        stub.GetEvents(pb.GetEventsRequest(limit=1000)),
    ]
    for sid in sessions:
        calls += [
            stub.GetMessages(pb.GetMessagesRequest(session_id=sid)),
            stub.GetMessages(pb.GetMessagesRequest(session_id=sid, strategy="last_n", limit=5)),
            stub.GetMemory(pb.GetMemoryRequest(user_id=user, session_id=sid, merged=True)),
            stub.GetEvents(pb.GetEventsRequest(session_id=sid, limit=1000)),
        ]
    out = []
    for call in calls:
        try:
            out.append(str(await call))
        except grpc.aio.AioRpcError as e:
            assert e.code() != grpc.StatusCode.INTERNAL, e.details()
            out.append(str(e.details()))
    return out


async def test_forget_user_erases_everywhere(
    application: Application,
    http: httpx.AsyncClient,
    stub: pb_grpc.SessionServiceStub,
    backend: str,
    request: pytest.FixtureRequest,
) -> None:
    schema = _schema(backend, request)
    app, log = application, application.log
    sessions = ["s-alice-1", "s-alice-2"]
    await write_user(http, "alice", sessions)
    r = await http.post("/v1/sessions", json={"user_id": "bob", "session_id": "s-bob"})
    await http.post(
        "/v1/sessions/s-bob/messages", json={"messages": [{"role": "user", "content": "bob-kept"}]}
    )
    await http.put("/v1/users/bob/memory/k", json={"value": "bob-value"})

    # Before: the service reads the secrets back; at rest, the log and the read models hold ciphertext only.
    got = (await http.get("/v1/sessions/s-alice-1/messages")).json()["messages"]
    assert [m.get("content") for m in got] == [secret("question-s-alice-1"), None, secret("result-s-alice-1")]
    assert secret("args-s-alice-1") in got[1]["tool_calls"][0]["function"]["arguments"]
    memory = await http.get("/v1/users/alice/memory", params={"session_id": "s-alice-2", "merged": "true"})
    assert memory.json()["memories"] == {
        "profile": {"deep": [secret("umem")]},
        "note-s-alice-2": secret("smem-s-alice-2"),
    }
    audit = (await http.get("/v1/events", params={"user_id": "alice"})).text
    assert secret("umem") in audit and secret("args-s-alice-2") in audit
    assert CANARY.encode() not in await dump_redis(log)
    assert CANARY not in await dump_read_model(app, schema)

    # Forget (the admin endpoint).
    r = await http.post("/v1/users/alice/forget")
    assert r.status_code == 200, r.text
    body = r.json()
    assert sorted(body["sessions_deleted"]) == sessions and body["key_destroyed"] is True
    assert CANARY not in r.text

    # No canary in any read-model row; no row of alice at all.
    assert CANARY not in await dump_read_model(app, schema)
    assert await rows_of(app, schema, "alice") == {"sessions": 0, "memories": 0}
    # ... nor in any API response (HTTP, gRPC).
    for response in await _http_responses(http, "alice", sessions):
        assert response.status_code < 500 and CANARY not in response.text, response.text
    for text in await _grpc_texts(stub, "alice", sessions):
        assert CANARY not in text, text
    # ... nor in the log, in plain text; and the log's ciphertext cannot be opened any more.
    assert CANARY.encode() not in await dump_redis(log)
    assert await app.data_keys.get("default", "alice") is None
    sealed = 0
    for p in range(log.partitions):
        for entry in await log.read(p, count=10_000):
            event = decode_entry(entry)
            if not isinstance(event, MessagesAdded | MemorySaved) or event.aggregate_id == "s-bob":
                continue
            if isinstance(event, MemorySaved) and event.payload.user_id == "bob":
                continue
            assert event.encryption_key_id is not None and event.encryption_key_id.startswith(
                "dek:default:alice:"
            )
            values = (
                [event.payload.value]
                if isinstance(event, MemorySaved)
                else [m.content for m in event.payload.messages if m.content is not None]
            )
            for value in values:
                assert is_sealed(value)
                with pytest.raises(Erased):
                    open_text(None, aad("default", "alice", event.aggregate_kind, event.aggregate_id), value)
                sealed += 1
    assert sealed == 2 * 2 + 2 + 1  # per session: question, tool result, session memory; user memory
    # The audit trail: user.forgotten, with the user id and nothing else.
    events = (await http.get("/v1/events", params={"user_id": "alice", "type": "user.forgotten.v1"})).json()
    assert [(e["type"], e["payload"]) for e in events["events"]] == [
        ("user.forgotten.v1", {"user_id": "alice"})
    ]

    # A fresh rebuild brings nothing back.
    await rebuild(app.read_model, log, batch=7)
    assert CANARY not in await dump_read_model(app, schema)
    assert await rows_of(app, schema, "alice") == {"sessions": 0, "memories": 0}
    for response in await _http_responses(http, "alice", sessions):
        assert CANARY not in response.text, response.text

    # Bob is untouched.
    bob = (await http.get("/v1/sessions/s-bob/messages")).json()["messages"]
    assert [m["content"] for m in bob] == ["bob-kept"]
    assert (await http.get("/v1/users/bob/memory")).json()["memories"]["k"] == "bob-value"

    # Again: harmless. Then alice comes back, with a new key; her old events stay erased.
    again = await app.forget_user(Context(), "alice")
    assert again.sessions_deleted == [] and again.key_destroyed is False
    await http.post("/v1/sessions", json={"user_id": "alice", "session_id": "s-alice-3"})
    await http.post("/v1/sessions/s-alice-3/messages", json={"messages": [{"role": "user", "content": "hi"}]})
    await http.put("/v1/users/alice/memory/profile", json={"value": 7})
    assert [m["content"] for m in (await http.get("/v1/sessions/s-alice-3/messages")).json()["messages"]] == [
        "hi"
    ]
    assert (await http.get("/v1/users/alice/memory")).json()["memories"]["profile"] == 7
    audit = (await http.get("/v1/events", params={"user_id": "alice", "limit": 1000})).json()["events"]
    old_saves = [e for e in audit if e["type"] == "memory.saved.v1" and e["payload"].get("erased")]
    assert len(old_saves) == 3 and all(e["payload"]["value"] is None for e in old_saves)
    assert CANARY not in msgspec.json.encode(audit).decode()

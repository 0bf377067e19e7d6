"""The original platform's flow over gRPC, with stubs generated from proto/sessions.proto, on the embedded
default and on the real Redis + PostgreSQL."""

from __future__ import annotations

import json

import grpc

from proto import sessions_pb2 as pb
from proto import sessions_pb2_grpc as pb_grpc

from .helpers import CONVERSATION, proto_messages

Stub = pb_grpc.SessionServiceStub
GATEWAY = (("x-target-service", "sessions"),)


async def test_sessions_are_created_resumed_and_created_with_a_custom_id(stub: Stub) -> None:
    # The original SDK sends session_id="" for "none": a new session with a new id.
    first = await stub.GetOrCreateSession(pb.GetOrCreateSessionRequest(user_id="alice", session_id=""))
    assert first.session_id and first.user_id == "alice" and first.created
    assert first.created_at > 1_600_000_000_000  # epoch milliseconds
    assert first.updated_at >= first.created_at

    again = await stub.GetOrCreateSession(
        pb.GetOrCreateSessionRequest(user_id="alice", session_id=first.session_id)
    )
    assert (again.session_id, again.created_at, again.created) == (first.session_id, first.created_at, False)

    custom = await stub.GetOrCreateSession(
        pb.GetOrCreateSessionRequest(user_id="alice", session_id="my-chat-1"), metadata=GATEWAY
    )
    assert custom.session_id == "my-chat-1" and custom.created

    listed = await stub.ListSessions(pb.ListSessionsRequest(user_id="alice"))
    assert {s.session_id for s in listed.sessions} == {first.session_id, "my-chat-1"}
    assert all(s.user_id == "alice" for s in listed.sessions)


async def test_six_messages_with_a_tool_call_read_back_in_order_and_page(stub: Stub) -> None:
    s = await stub.GetOrCreateSession(pb.GetOrCreateSessionRequest(user_id="bob"))
    added = await stub.AddMessages(
        pb.AddMessagesRequest(session_id=s.session_id, messages=proto_messages(CONVERSATION))
    )
    assert added.success and added.message_count == 6 and added.total_messages == 6

    everything = await stub.GetMessages(pb.GetMessagesRequest(session_id=s.session_id))
    assert everything.total_count == 6
    assert [m.role for m in everything.messages] == [
        "system",
        "user",
        "assistant",
        "tool",
        "assistant",
        "user",
    ]
    assert [m.seq for m in everything.messages] == [1, 2, 3, 4, 5, 6]
    call = everything.messages[2]
    assert not call.HasField("content")
    assert [(tc.id, tc.type, tc.function.name) for tc in call.tool_calls] == [
        ("call_1", "function", "weather")
    ]
    assert json.loads(call.tool_calls[0].function.arguments) == {"city": "Paris"}
    assert everything.messages[3].tool_call_id == "call_1"
    assert all(m.timestamp > 0 for m in everything.messages)  # stamped by the service

    first_two = await stub.GetMessages(pb.GetMessagesRequest(session_id=s.session_id, limit=2))
    assert first_two.total_count == 6
    assert [m.content for m in first_two.messages] == [CONVERSATION[0]["content"], CONVERSATION[1]["content"]]

    middle = await stub.GetMessages(pb.GetMessagesRequest(session_id=s.session_id, limit=2, offset=2))
    assert [m.role for m in middle.messages] == ["assistant", "tool"]
    assert middle.messages[0].tool_calls[0].id == middle.messages[1].tool_call_id == "call_1"

    latest = await stub.GetMessages(pb.GetMessagesRequest(session_id=s.session_id, limit=2, order="desc"))
    assert [m.seq for m in latest.messages] == [6, 5]

    resumed = await stub.GetOrCreateSession(
        pb.GetOrCreateSessionRequest(user_id="bob", session_id=s.session_id)
    )
    assert resumed.message_count == 6 and resumed.updated_at >= s.updated_at


async def test_memory_user_and_session_scoped_overwritten_deleted_and_cleared(stub: Stub) -> None:
    s = await stub.GetOrCreateSession(pb.GetOrCreateSessionRequest(user_id="carol"))
    for key, value in [("name", "Carol"), ("allergies", ["penicillin"]), ("city", "Lyon")]:
        saved = await stub.SaveMemory(pb.SaveMemoryRequest(user_id="carol", key=key, value=json.dumps(value)))
        assert saved.success
    await stub.SaveMemory(pb.SaveMemoryRequest(user_id="carol", key="city", value=json.dumps("Paris")))

    memories = (await stub.GetMemory(pb.GetMemoryRequest(user_id="carol"))).memories
    # Encoded once: each value is the JSON text of the saved value (the original encoded it twice).
    assert {k: json.loads(v) for k, v in memories.items()} == {
        "name": "Carol",
        "allergies": ["penicillin"],
        "city": "Paris",
    }
    one = await stub.GetMemory(pb.GetMemoryRequest(user_id="carol", key="allergies"))
    assert dict(one.memories) == {"allergies": '["penicillin"]'}

    scoped = pb.SaveMemoryRequest(user_id="carol", key="topic", value='"weather"', session_id=s.session_id)
    assert (await stub.SaveMemory(scoped)).success
    in_session = await stub.GetMemory(pb.GetMemoryRequest(user_id="carol", session_id=s.session_id))
    assert {k: json.loads(v) for k, v in in_session.memories.items()} == {"topic": "weather"}
    merged = await stub.GetMemory(pb.GetMemoryRequest(user_id="carol", session_id=s.session_id, merged=True))
    assert set(merged.memories) == {"name", "allergies", "city", "topic"}
    user_only = await stub.GetMemory(pb.GetMemoryRequest(user_id="carol", session_id=""))
    assert "topic" not in user_only.memories  # "" means absent: the user scope

    gone = await stub.DeleteMemory(
        pb.DeleteMemoryRequest(user_id="carol", key="topic", session_id=s.session_id)
    )
    assert gone.success
    again = await stub.DeleteMemory(
        pb.DeleteMemoryRequest(user_id="carol", key="topic", session_id=s.session_id)
    )
    assert not again.success  # a missing key answers false, as the original did
    assert not (await stub.GetMemory(pb.GetMemoryRequest(user_id="carol", session_id=s.session_id))).memories

    cleared = await stub.ClearUserMemory(pb.ClearUserMemoryRequest(user_id="carol"))
    assert cleared.count == 3
    assert not (await stub.GetMemory(pb.GetMemoryRequest(user_id="carol"))).memories


async def test_a_return_visit_sees_the_memory_and_a_deleted_session_keeps_it(stub: Stub) -> None:
    first = await stub.GetOrCreateSession(pb.GetOrCreateSessionRequest(user_id="dan"))
    await stub.AddMessages(
        pb.AddMessagesRequest(
            session_id=first.session_id, messages=[pb.Message(role="user", content="I am vegetarian")]
        )
    )
    await stub.SaveMemory(pb.SaveMemoryRequest(user_id="dan", key="diet", value='"vegetarian"'))

    visit = await stub.GetOrCreateSession(pb.GetOrCreateSessionRequest(user_id="dan"))
    assert visit.session_id != first.session_id and visit.created
    assert dict((await stub.GetMemory(pb.GetMemoryRequest(user_id="dan"))).memories) == {
        "diet": '"vegetarian"'
    }

    assert (await stub.DeleteSession(pb.DeleteSessionRequest(session_id=first.session_id))).success
    assert not (await stub.DeleteSession(pb.DeleteSessionRequest(session_id=first.session_id))).success
    assert not (await stub.DeleteSession(pb.DeleteSessionRequest(session_id="never-was"))).success
    try:
        await stub.GetMessages(pb.GetMessagesRequest(session_id=first.session_id))
    except grpc.aio.AioRpcError as e:
        assert e.code() == grpc.StatusCode.NOT_FOUND
    else:
        raise AssertionError("a deleted session's messages are gone")
    assert dict((await stub.GetMemory(pb.GetMemoryRequest(user_id="dan"))).memories) == {
        "diet": '"vegetarian"'
    }
    listed = await stub.ListSessions(pb.ListSessionsRequest(user_id="dan"))
    assert [x.session_id for x in listed.sessions] == [visit.session_id]


async def test_the_audit_trail_and_an_idempotent_retry(stub: Stub) -> None:
    s = await stub.GetOrCreateSession(
        pb.GetOrCreateSessionRequest(user_id="erin"), metadata=(("x-correlation-id", "req-42"),)
    )
    request = pb.AddMessagesRequest(
        session_id=s.session_id, messages=[pb.Message(role="user", content="once")], idempotency_key="k-1"
    )
    first = await stub.AddMessages(request, metadata=(("x-actor", "model:gpt"),))
    retry = await stub.AddMessages(request, metadata=(("x-actor", "model:gpt"),))
    assert (first.duplicate, retry.duplicate) == (False, True)
    assert retry.version == first.version and retry.total_messages == 1

    events = (await stub.GetEvents(pb.GetEventsRequest(session_id=s.session_id))).events
    assert [e.type for e in events] == ["session.created.v1", "session.messages_added.v1"]
    assert [e.version for e in events] == [1, 2]
    assert events[0].correlation_id == "req-42" and events[0].user_id == "erin"
    assert (events[1].actor_kind, events[1].actor_id) == ("model", "gpt")
    assert json.loads(events[1].payload_json)["messages"][0]["content"] == "once"
    by_user = await stub.GetEvents(pb.GetEventsRequest(user_id="erin", types=["session.created.v1"]))
    assert [e.event_id for e in by_user.events] == [events[0].event_id]

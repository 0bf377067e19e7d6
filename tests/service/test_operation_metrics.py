"""Issue 9: a command's appends and refusals are counted once, in the core (``service.operations.command``),
under the operation's name, whichever adapter the call came through."""

from __future__ import annotations

import grpc
import httpx
import pytest

from proto import sessions_pb2 as pb
from proto import sessions_pb2_grpc as pb_grpc
from service.app import Application


def count(application: Application, command: str, outcome: str) -> float:
    value = application.metrics.registry.get_sample_value(
        "sessions_appends_total", {"command": command, "outcome": outcome}
    )
    return value or 0.0


async def test_http_and_grpc_writes_count_under_one_operation(
    application: Application, http: httpx.AsyncClient, stub: pb_grpc.SessionServiceStub
) -> None:
    r = await http.post("/v1/sessions", json={"user_id": "alice", "session_id": "m1"})
    assert r.status_code == 201, r.text
    await stub.GetOrCreateSession(pb.GetOrCreateSessionRequest(user_id="alice", session_id="m2"), timeout=20)
    await stub.GetOrCreateSession(pb.GetOrCreateSessionRequest(user_id="alice", session_id="m2"), timeout=20)
    assert count(application, "create_session", "appended") == 2
    assert count(application, "create_session", "noop") == 1

    msg = {"messages": [{"role": "user", "content": "hi"}]}
    assert (await http.post("/v1/sessions/m1/messages", json=msg)).status_code == 201
    await stub.AddMessages(
        pb.AddMessagesRequest(session_id="m2", messages=[pb.Message(role="user", content="hi")]), timeout=20
    )
    assert count(application, "add_messages", "appended") == 2

    # refusals of the log, through either adapter
    assert (await http.post("/v1/sessions/nope/messages", json=msg)).status_code == 404
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.AddMessages(
            pb.AddMessagesRequest(session_id="nope", messages=[pb.Message(role="user", content="x")]),
            timeout=20,
        )
    assert count(application, "add_messages", "refused") == 2
    text = (await http.get("/metrics")).text
    assert 'sessions_appends_total{command="add_messages",outcome="appended"} 2.0' in text

"""Nothing of message contents or memory values in any log line (DEBUG included) or error message, through a
full flow: HTTP and gRPC writes and reads, refusals of bad input that carries content, and an erasure."""

from __future__ import annotations

import logging

import grpc
import httpx
import pytest

from proto import sessions_pb2 as pb
from proto import sessions_pb2_grpc as pb_grpc
from service.app import Application

from .erasure_helpers import CANARY, secret, write_user


async def test_no_content_in_logs_or_errors(
    application: Application,
    http: httpx.AsyncClient,
    stub: pb_grpc.SessionServiceStub,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    await write_user(http, "carol", ["s-carol"])
    texts = [
        (await http.get("/v1/sessions/s-carol/messages")).text,
        (await http.get("/v1/users/carol/memory", params={"session_id": "s-carol", "merged": "true"})).text,
        (await http.get("/v1/events", params={"user_id": "carol"})).text,
    ]
    assert all(CANARY in t for t in texts)  # the flow did carry the secrets

    # Refusals of input that carries content: the problem names the field, never echoes the value.
    bad = [
        await http.post(
            "/v1/sessions/s-carol/messages", json={"messages": [{"role": "robot", "content": secret("role")}]}
        ),
        await http.post(
            "/v1/sessions/s-carol/messages",
            json={"messages": [{"role": "user", "content": 7, "x": secret("x")}]},
        ),
        await http.post(
            "/v1/sessions/s-carol/messages",
            json={"messages": [{"role": "tool", "tool_call_id": "nope", "content": secret("orphan")}]},
        ),
        await http.post(
            "/v1/sessions/s-carol/messages",
            json={"messages": [{"role": "user", "content": secret("big") * 100_000}]},
        ),
        await http.post(
            "/v1/sessions/s-carol/messages",
            content=b'{"messages": [{"role": "user", "content": "' + secret("broken").encode() + b'"',
            headers={"content-type": "application/json"},
        ),
        await http.put("/v1/users/carol/memory/k", json={"value": secret("v"), "extra": secret("extra")}),
        await http.put("/v1/users/carol/memory/k", json={"value": secret("big") * 200_000}),
        await http.post(
            "/v1/sessions/missing/messages", json={"messages": [{"role": "user", "content": secret("m")}]}
        ),
    ]
    for r in bad:
        assert 400 <= r.status_code < 500, r.text
        assert CANARY not in r.text, r.text

    # gRPC: a read, and a refusal that carries content.
    got = await stub.GetMessages(pb.GetMessagesRequest(session_id="s-carol"))
    assert CANARY in str(got)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.AddMessages(
            pb.AddMessagesRequest(
                session_id="s-carol",
                messages=[pb.Message(role="tool", tool_call_id="nope", content=secret("g"))],
            )
        )
    assert CANARY not in str(refused.value.details())
    await stub.SaveMemory(pb.SaveMemoryRequest(user_id="carol", key="g", value=f'"{secret("grpc")}"'))
    assert CANARY in str(await stub.GetMemory(pb.GetMemoryRequest(user_id="carol")))

    assert (await http.post("/v1/users/carol/forget")).status_code == 200
    assert caplog.records, "the flow logged nothing: the capture is not working"
    for record in caplog.records:
        line = record.getMessage() + (record.exc_text or "")
        assert CANARY not in line, f"{record.name}: {line}"
    assert CANARY not in caplog.text

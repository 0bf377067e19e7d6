"""Issue 15 item 4: a command answers from the log alone, never by waiting for the read model. With no
projector running (``serve --no-projector`` and no worker), creating or resuming a session answers at once,
over HTTP and gRPC, on fakeredis and on the real Redis; a create retried with the same ``Idempotency-Key``
returns the first session instead of a new one, and the same key with another request is refused."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import grpc
import httpx
import pytest

from proto import sessions_pb2 as pb
from proto import sessions_pb2_grpc as pb_grpc
from service.app import Application
from service.grpc.servicer import create_grpc_server
from service.http.app import create_app
from tests.fix_service import close_application, make_application

from .helpers import assert_problem

# A read would wait this long for the (absent) projector and then answer 503; a command must not.
READ_TIMEOUT_S = 3.0


@pytest.fixture
async def no_projector(
    backend: str, key_prefix: str, request: pytest.FixtureRequest
) -> AsyncIterator[Application]:
    app, log = await make_application(
        backend, key_prefix, request, projector=False, read_timeout_s=READ_TIMEOUT_S
    )
    yield app
    await close_application(app, log, backend)


@pytest.fixture
async def client(no_projector: Application) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(no_projector))
    async with httpx.AsyncClient(transport=transport, base_url="http://sessions.test") as http:
        yield http


async def test_create_and_resume_answer_from_the_log_without_a_projector(client: httpx.AsyncClient) -> None:
    start = time.monotonic()
    created = await client.post("/v1/sessions", json={"user_id": "alice", "metadata": {"topic": "rain"}})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["created"] is True and body["user_id"] == "alice" and body["version"] == 1
    assert body["metadata"] == {"topic": "rain"} and body["message_count"] == 0
    sid = body["session_id"]

    added = await client.post(
        f"/v1/sessions/{sid}/messages", json={"messages": [{"role": "user", "content": "hi"}]}
    )
    assert added.status_code == 201, added.text
    resumed = await client.post("/v1/sessions", json={"user_id": "alice", "session_id": sid})
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["session_id"] == sid and resumed.json()["created"] is False
    assert resumed.json()["version"] == 2 and resumed.json()["message_count"] == 1
    assert "X-Session-Position" in resumed.headers
    assert time.monotonic() - start < READ_TIMEOUT_S  # nothing waited for the read model

    # the read model is behind: a read says so (503), it does not make the write wait
    assert_problem(await client.get(f"/v1/sessions/{sid}"), 503, "read_model_behind")
    # another user's id is still refused by the log
    assert_problem(
        await client.post("/v1/sessions", json={"user_id": "mallory", "session_id": sid}),
        403,
        "session_owned_by_another_user",
    )


async def test_a_create_retried_with_its_idempotency_key_returns_the_first_session(
    client: httpx.AsyncClient,
) -> None:
    headers = {"Idempotency-Key": "create-1"}
    first = await client.post("/v1/sessions", json={"user_id": "bob"}, headers=headers)
    assert first.status_code == 201, first.text
    again = await client.post("/v1/sessions", json={"user_id": "bob"}, headers=headers)
    assert again.status_code == 201, again.text
    assert again.json()["session_id"] == first.json()["session_id"]
    assert again.json()["created_at"] == first.json()["created_at"]
    assert again.headers["Idempotent-Replayed"] == "true"
    # without the key, a retry is a new session; with another key too
    other = await client.post(
        "/v1/sessions", json={"user_id": "bob"}, headers={"Idempotency-Key": "create-2"}
    )
    assert other.json()["session_id"] != first.json()["session_id"]
    # the same key for another request: refused, nothing created
    for changed in ({"user_id": "carol"}, {"user_id": "bob", "metadata": {"x": 1}}):
        assert_problem(
            await client.post("/v1/sessions", json=changed, headers=headers), 409, "idempotency_key_reused"
        )


async def test_grpc_get_or_create_answers_without_a_projector(no_projector: Application) -> None:
    server, port = create_grpc_server(no_projector, "127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.SessionServiceStub(channel)
            start = time.monotonic()
            created = await stub.GetOrCreateSession(
                pb.GetOrCreateSessionRequest(user_id="dora"), timeout=READ_TIMEOUT_S
            )
            assert created.created and created.user_id == "dora"
            resumed = await stub.GetOrCreateSession(
                pb.GetOrCreateSessionRequest(user_id="dora", session_id=created.session_id),
                timeout=READ_TIMEOUT_S,
            )
            assert resumed.session_id == created.session_id and not resumed.created
            key = (("idempotency-key", "grpc-create-1"),)
            first = await stub.GetOrCreateSession(pb.GetOrCreateSessionRequest(user_id="dora"), metadata=key)
            again = await stub.GetOrCreateSession(pb.GetOrCreateSessionRequest(user_id="dora"), metadata=key)
            assert again.session_id == first.session_id and again.created
            assert time.monotonic() - start < READ_TIMEOUT_S
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await stub.GetOrCreateSession(pb.GetOrCreateSessionRequest(user_id="eve"), metadata=key)
            assert e.value.code() == grpc.StatusCode.ABORTED
            assert ("error-code", "idempotency_key_reused") in list(e.value.trailing_metadata() or ())
    finally:
        await server.stop(None)

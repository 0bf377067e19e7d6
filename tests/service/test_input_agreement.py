"""Issue 15 item 10: input answers that agree. The same bad id answers 400 ``invalid_id`` wherever it is; a
body-less request says so; filters, windows and headers that used to be silently accepted are refused with a
code that names the mistake; an Idempotency-Key reused for another request is refused; messages are recorded
with the same actor rule as the other writes. Each over gRPC too where the input exists."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import grpc
import httpx
import pytest

from proto import sessions_pb2 as pb
from proto import sessions_pb2_grpc as pb_grpc

from .helpers import assert_problem

BAD_IDS = ["a/b", "a\x01b", "x" * 257]


async def new_session(http: httpx.AsyncClient, user: str = "alice") -> str:
    r = await http.post("/v1/sessions", json={"user_id": user})
    assert r.status_code == 201, r.text
    return str(r.json()["session_id"])


async def grpc_error(call: Any, request: Any, metadata: Any = ()) -> tuple[grpc.StatusCode, str | None]:
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await call(request, metadata=metadata, timeout=20)
    codes = [v for k, v in (e.value.trailing_metadata() or ()) if k == "error-code"]
    return e.value.code(), (codes[0] if codes else None)


async def test_a_bad_id_is_invalid_id_wherever_it_is(
    http: httpx.AsyncClient, stub: pb_grpc.SessionServiceStub
) -> None:
    sid = await new_session(http)
    for bad in BAD_IDS:
        answers = [
            await http.post("/v1/sessions", json={"user_id": bad}),
            await http.post("/v1/sessions", json={"user_id": "alice", "session_id": bad}),
            await http.put("/v1/users/alice/memory/k", json={"value": 1, "session_id": bad}),
            await http.get("/v1/users/alice/memory", params={"session_id": bad}),
            await http.get("/v1/events", params={"user_id": bad}),
        ]
        if "/" not in bad:  # a '/' in a path is another route
            answers.append(await http.get(f"/v1/sessions/{quote(bad)}"))
            answers.append(await http.put(f"/v1/users/{quote(bad)}/memory/k", json={"value": 1}))
        for r in answers:
            assert_problem(r, 400, "invalid_id")
        for call, request in [
            (stub.GetOrCreateSession, pb.GetOrCreateSessionRequest(user_id=bad)),
            (stub.GetOrCreateSession, pb.GetOrCreateSessionRequest(user_id="alice", session_id=bad)),
            (stub.GetMessages, pb.GetMessagesRequest(session_id=bad)),
            (stub.SaveMemory, pb.SaveMemoryRequest(user_id="alice", key="k", value="1", session_id=bad)),
        ]:
            assert await grpc_error(call, request) == (grpc.StatusCode.INVALID_ARGUMENT, "invalid_id")
    assert (await http.get(f"/v1/sessions/{sid}")).status_code == 200


async def test_a_request_without_its_body_says_so(http: httpx.AsyncClient) -> None:
    sid = await new_session(http)
    for method, path in [
        ("POST", "/v1/sessions"),
        ("POST", f"/v1/sessions/{sid}/messages"),
        ("PUT", "/v1/users/alice/memory/k"),
        ("POST", "/v1/events"),
    ]:
        body = assert_problem(await http.request(method, path), 400, "missing_body")
        assert "'data'" not in body["detail"]


async def test_audit_filters_name_known_types_and_actor_kinds(
    http: httpx.AsyncClient, stub: pb_grpc.SessionServiceStub
) -> None:
    body = assert_problem(
        await http.get("/v1/events", params={"type": "memory.saved"}), 400, "invalid_event_type"
    )
    assert "memory.saved.v1" in body["known"] and "memory.saved.v1" in body["detail"]
    body = assert_problem(
        await http.get("/v1/events", params={"actor_kind": "robot"}), 400, "invalid_actor_kind"
    )
    assert body["known"] == ["user", "model", "service", "admin"]
    assert (
        await http.get("/v1/events", params={"type": "memory.saved.v1", "actor_kind": "user"})
    ).status_code == 200
    assert await grpc_error(stub.GetEvents, pb.GetEventsRequest(types=["memory.saved"])) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "invalid_event_type",
    )


async def test_windows_and_pages_refuse_what_they_would_ignore(
    http: httpx.AsyncClient, stub: pb_grpc.SessionServiceStub
) -> None:
    sid = await new_session(http)
    url = f"/v1/sessions/{sid}/messages"
    assert_problem(await http.get(url, params={"strategy": "token_budget"}), 400, "budget_required")
    assert_problem(await http.get(url, params={"budget": 100}), 400, "budget_without_strategy")
    assert_problem(await http.get(url, params={"after": "x", "before": "y"}), 400, "after_with_before")
    for params in ({"strategy": "token_budget", "budget": 100}, {"strategy": "token_budget", "limit": 100}):
        assert (await http.get(url, params=params)).status_code == 200
    for request, code in [
        (pb.GetMessagesRequest(session_id=sid, strategy="token_budget"), "budget_required"),
        (pb.GetMessagesRequest(session_id=sid, budget=100), "budget_without_strategy"),
    ]:
        assert await grpc_error(stub.GetMessages, request) == (grpc.StatusCode.INVALID_ARGUMENT, code)


async def test_expected_version_must_be_a_number(http: httpx.AsyncClient) -> None:
    sid = await new_session(http)
    msg = [{"role": "user", "content": "hi"}]
    url = f"/v1/sessions/{sid}/messages"
    for bad in ("1", True):
        assert_problem(
            await http.post(url, json={"messages": msg, "expected_version": bad}), 400, "invalid_request"
        )
    assert (await http.post(url, json={"messages": msg, "expected_version": 1})).status_code == 201


async def test_a_tenant_header_must_name_a_tenant(
    http: httpx.AsyncClient, stub: pb_grpc.SessionServiceStub
) -> None:
    assert_problem(
        await http.get("/v1/users/alice/sessions", headers={"X-Tenant-Id": "a/b"}), 400, "invalid_tenant"
    )
    assert await grpc_error(
        stub.ListSessions, pb.ListSessionsRequest(user_id="alice"), (("x-tenant-id", "a/b"),)
    ) == (grpc.StatusCode.INVALID_ARGUMENT, "invalid_tenant")


async def test_an_idempotency_key_reused_for_other_messages_is_refused(
    http: httpx.AsyncClient, stub: pb_grpc.SessionServiceStub
) -> None:
    sid = await new_session(http)
    url = f"/v1/sessions/{sid}/messages"
    headers = {"Idempotency-Key": "add-1"}
    first = await http.post(url, json={"messages": [{"role": "user", "content": "a"}]}, headers=headers)
    assert first.status_code == 201, first.text
    again = await http.post(url, json={"messages": [{"role": "user", "content": "a"}]}, headers=headers)
    assert again.status_code == 201 and again.json()["duplicate"] is True
    other = await http.post(url, json={"messages": [{"role": "user", "content": "b"}]}, headers=headers)
    assert_problem(other, 409, "idempotency_key_reused")
    # a key whose first request was refused is free again for the corrected request
    refused = await http.post(
        url,
        json={"messages": [{"role": "tool", "tool_call_id": "ghost", "content": "x"}]},
        headers={"Idempotency-Key": "add-2"},
    )
    assert_problem(refused, 422, "unknown_tool_call")
    fixed = await http.post(
        url, json={"messages": [{"role": "user", "content": "c"}]}, headers={"Idempotency-Key": "add-2"}
    )
    assert fixed.status_code == 201, fixed.text
    assert (await http.get(url)).json()["total"] == 2

    request = pb.AddMessagesRequest(
        session_id=sid, messages=[pb.Message(role="user", content="g")], idempotency_key="add-3"
    )
    assert (await stub.AddMessages(request, timeout=20)).success
    request.messages[0].content = "h"
    assert await grpc_error(stub.AddMessages, request) == (grpc.StatusCode.ABORTED, "idempotency_key_reused")


async def test_messages_are_recorded_as_the_sessions_user(http: httpx.AsyncClient) -> None:
    sid = await new_session(http, "alice")
    r = await http.post(
        f"/v1/sessions/{sid}/messages", json={"messages": [{"role": "user", "content": "hi"}]}
    )
    assert r.status_code == 201, r.text
    events = (await http.get(f"/v1/sessions/{sid}/events")).json()["events"]
    actors = {e["type"]: (e["actor_kind"], e["actor_id"]) for e in events}
    assert actors["session.created.v1"] == ("user", "alice")
    assert actors["session.messages_added.v1"] == ("user", "alice")
    # an actor the request names still wins
    r = await http.post(
        f"/v1/sessions/{sid}/messages",
        json={"messages": [{"role": "assistant", "content": "hello"}]},
        headers={"X-Actor": "model:gpt"},
    )
    events = (await http.get(f"/v1/sessions/{sid}/events")).json()["events"]
    assert (events[-1]["actor_kind"], events[-1]["actor_id"]) == ("model", "gpt")

"""Error mapping: a refusal is a status with the stable code (message and ``error-code`` trailer), never
INTERNAL for bad input; deleting what is not there answers false; the gateway's metadata is ignored."""

from __future__ import annotations

import json

import grpc
import pytest

from proto import sessions_pb2 as pb
from proto import sessions_pb2_grpc as pb_grpc
from service.app import Application
from service.grpc.servicer import create_grpc_server
from tests.fix_service import close_application, make_application

from .helpers import expect_error

Stub = pb_grpc.SessionServiceStub
S = grpc.StatusCode


async def _session(stub: Stub, user: str = "u1", session_id: str = "") -> str:
    reply = await stub.GetOrCreateSession(pb.GetOrCreateSessionRequest(user_id=user, session_id=session_id))
    return str(reply.session_id)


async def test_missing_and_malformed_input_is_invalid_argument(stub: Stub) -> None:
    sid = await _session(stub)
    await expect_error(
        stub.GetOrCreateSession(pb.GetOrCreateSessionRequest()), S.INVALID_ARGUMENT, "missing_user_id"
    )
    await expect_error(stub.AddMessages(pb.AddMessagesRequest()), S.INVALID_ARGUMENT, "missing_session_id")
    await expect_error(
        stub.AddMessages(pb.AddMessagesRequest(session_id=sid)), S.INVALID_ARGUMENT, "empty_messages"
    )
    await expect_error(
        stub.AddMessages(
            pb.AddMessagesRequest(session_id=sid, messages=[pb.Message(role="robot", content="x")])
        ),
        S.INVALID_ARGUMENT,
        "invalid_message",
    )
    await expect_error(
        stub.AddMessages(pb.AddMessagesRequest(session_id=sid, messages=[pb.Message(role="user")])),
        S.INVALID_ARGUMENT,
        "missing_content",
    )
    orphan = pb.Message(role="tool", content="42", tool_call_id="call_nope")
    await expect_error(
        stub.AddMessages(pb.AddMessagesRequest(session_id=sid, messages=[orphan])),
        S.INVALID_ARGUMENT,
        "unknown_tool_call",
    )
    await expect_error(
        stub.SaveMemory(pb.SaveMemoryRequest(user_id="u1", key="k", value="{not json")),
        S.INVALID_ARGUMENT,
        "invalid_value",
    )
    await expect_error(
        stub.SaveMemory(pb.SaveMemoryRequest(user_id="u1", key="", value="1")),
        S.INVALID_ARGUMENT,
        "missing_key",
    )
    await expect_error(
        stub.GetMessages(pb.GetMessagesRequest(session_id=sid, limit=-1)), S.INVALID_ARGUMENT, "invalid_limit"
    )
    await expect_error(
        stub.GetMessages(pb.GetMessagesRequest(session_id=sid, order="sideways")),
        S.INVALID_ARGUMENT,
        "invalid_order",
    )
    await expect_error(
        stub.GetMessages(pb.GetMessagesRequest(session_id=sid, strategy="last_n", offset=3)),
        S.INVALID_ARGUMENT,
        "strategy_with_paging",
    )
    await expect_error(
        stub.GetMemory(pb.GetMemoryRequest(user_id="u1", merged=True)),
        S.INVALID_ARGUMENT,
        "merged_needs_session",
    )
    await expect_error(
        stub.GetOrCreateSession(pb.GetOrCreateSessionRequest(user_id="u1"), metadata=(("x-actor", "robot"),)),
        S.INVALID_ARGUMENT,
        "invalid_actor",
    )


async def test_an_unknown_strategy_names_the_known_ones(stub: Stub) -> None:
    sid = await _session(stub)
    e = await expect_error(
        stub.GetMessages(pb.GetMessagesRequest(session_id=sid, strategy="hierarchical")),
        S.INVALID_ARGUMENT,
        "unknown_strategy",
    )
    assert "last_n, token_budget, truncate" in e.details()
    assert json.loads(dict(e.trailing_metadata())["error-details"]) == {
        "known": ["last_n", "token_budget", "truncate"]
    }


async def test_unknown_sessions_are_not_found_and_deletes_answer_false(stub: Stub) -> None:
    await expect_error(
        stub.GetMessages(pb.GetMessagesRequest(session_id="nope")), S.NOT_FOUND, "session_not_found"
    )
    await expect_error(
        stub.AddMessages(
            pb.AddMessagesRequest(session_id="nope", messages=[pb.Message(role="user", content="x")])
        ),
        S.NOT_FOUND,
        "session_not_found",
    )
    await expect_error(
        stub.GetMemory(pb.GetMemoryRequest(user_id="u1", session_id="nope")), S.NOT_FOUND, "session_not_found"
    )
    assert not (await stub.DeleteSession(pb.DeleteSessionRequest(session_id="nope"))).success
    assert not (await stub.DeleteMemory(pb.DeleteMemoryRequest(user_id="u1", key="nothing"))).success
    assert not (
        await stub.DeleteMemory(pb.DeleteMemoryRequest(user_id="u1", key="k", session_id="nope"))
    ).success

    sid = await _session(stub)
    await stub.DeleteSession(pb.DeleteSessionRequest(session_id=sid))
    await expect_error(
        stub.GetMessages(pb.GetMessagesRequest(session_id=sid)), S.NOT_FOUND, "session_deleted"
    )
    await expect_error(
        stub.GetOrCreateSession(pb.GetOrCreateSessionRequest(user_id="u1", session_id=sid)),
        S.NOT_FOUND,
        "session_deleted",
    )


async def test_another_users_session_is_permission_denied(stub: Stub) -> None:
    sid = await _session(stub, "owner")
    await expect_error(
        stub.GetOrCreateSession(pb.GetOrCreateSessionRequest(user_id="intruder", session_id=sid)),
        S.PERMISSION_DENIED,
        "session_owned_by_another_user",
    )
    await expect_error(
        stub.SaveMemory(pb.SaveMemoryRequest(user_id="intruder", key="k", value="1", session_id=sid)),
        S.PERMISSION_DENIED,
        "memory_session_not_owned",
    )
    await expect_error(
        stub.GetMemory(pb.GetMemoryRequest(user_id="intruder", session_id=sid)),
        S.PERMISSION_DENIED,
        "memory_session_not_owned",
    )


async def test_a_version_conflict_is_aborted_with_the_current_version(stub: Stub) -> None:
    sid = await _session(stub)
    one = [pb.Message(role="user", content="hi")]
    ok = await stub.AddMessages(pb.AddMessagesRequest(session_id=sid, messages=one, expected_version=1))
    assert ok.version == 2
    e = await expect_error(
        stub.AddMessages(pb.AddMessagesRequest(session_id=sid, messages=one, expected_version=1)),
        S.ABORTED,
        "version_conflict",
    )
    assert json.loads(dict(e.trailing_metadata())["error-details"])["current_version"] == 2


async def test_the_gateways_target_service_metadata_is_ignored(stub: Stub) -> None:
    gateway = (("x-target-service", "sessions"),)
    s = await stub.GetOrCreateSession(pb.GetOrCreateSessionRequest(user_id="g"), metadata=gateway)
    await stub.AddMessages(
        pb.AddMessagesRequest(session_id=s.session_id, messages=[pb.Message(role="user", content="hi")]),
        metadata=(("x-target-service", "something-else"),),
    )
    page = await stub.GetMessages(pb.GetMessagesRequest(session_id=s.session_id), metadata=gateway)
    assert page.total_count == 1


async def test_tenants_are_apart(stub: Stub) -> None:
    s = await stub.GetOrCreateSession(
        pb.GetOrCreateSessionRequest(user_id="t"), metadata=(("x-tenant-id", "a"),)
    )
    await expect_error(
        stub.GetMessages(pb.GetMessagesRequest(session_id=s.session_id), metadata=(("x-tenant-id", "b"),)),
        S.NOT_FOUND,
        "session_not_found",
    )


@pytest.mark.parametrize("backend", ["embedded"])
async def test_a_read_the_read_model_cannot_catch_up_with_is_unavailable(
    backend: str, key_prefix: str, request: pytest.FixtureRequest
) -> None:
    # No projector: the write lands in the log, the read model never shows it, the read gives up.
    app, log = await make_application(backend, key_prefix, request, projector=False, read_timeout_s=0.2)
    server, port = create_grpc_server(app, "127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.SessionServiceStub(channel)
            # issue 15 item 4: the create answers from the log (it waited for the read model, UNAVAILABLE)
            created = await stub.GetOrCreateSession(pb.GetOrCreateSessionRequest(user_id="late"))
            await expect_error(
                stub.GetMessages(pb.GetMessagesRequest(session_id=created.session_id)),
                S.UNAVAILABLE,
                "read_model_behind",
            )
    finally:
        await server.stop(None)
        await close_application(app, log, backend)


async def test_an_unexpected_failure_is_internal_with_a_reference_and_no_trace(
    application: Application, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(application.queries, "sessions_of", broken)
    server, port = create_grpc_server(application, "127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.SessionServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.ListSessions(pb.ListSessionsRequest(user_id="x"))
    finally:
        await server.stop(None)
    assert info.value.code() == S.INTERNAL
    assert info.value.details().startswith("internal_error: ") and "secret" not in info.value.details()
    assert dict(info.value.trailing_metadata())["error-code"] == "internal_error"

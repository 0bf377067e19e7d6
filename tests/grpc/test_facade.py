"""The ``genai_platform`` SDK through the original flow, with the original's return shapes, and its errors.

The SDK is blocking (as the original): each test runs its body in a thread while the server serves on the
test's event loop."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from genai_platform import (
    ConflictError,
    GenAIPlatform,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    PlatformError,
)
from genai_platform.platform import ADDRESS_ENV, DEFAULT_ADDRESS

from .helpers import CONVERSATION


def original_flow(platform: GenAIPlatform) -> None:
    sessions = platform.sessions
    s = sessions.get_or_create("patient-123")
    assert s.session_id and s.user_id == "patient-123" and s.created_at > 0 and s.updated_at >= s.created_at
    assert sessions.get_or_create("patient-123", s.session_id).session_id == s.session_id
    assert sessions.get_or_create("patient-123", "visit-1").session_id == "visit-1"

    assert sessions.add_messages(s.session_id, CONVERSATION) == 6
    messages, total = sessions.get_messages(s.session_id)
    assert total == 6 and len(messages) == 6
    # The original's dict shape: role and timestamp always, the rest when present.
    assert set(messages[0]) == {"role", "timestamp", "content"}
    assert set(messages[2]) == {"role", "timestamp", "tool_calls"}
    assert messages[2]["tool_calls"] == CONVERSATION[2]["tool_calls"]
    assert set(messages[3]) == {"role", "timestamp", "content", "tool_call_id"}
    two, total = sessions.get_messages(s.session_id, limit=2)
    assert total == 6 and [m["content"] for m in two] == [c["content"] for c in CONVERSATION[:2]]
    middle, _ = sessions.get_messages(s.session_id, limit=2, offset=2)
    assert [m["role"] for m in middle] == ["assistant", "tool"]
    assert middle[0]["tool_calls"][0]["id"] == middle[1]["tool_call_id"]
    newest, _ = sessions.get_messages(s.session_id, limit=2, order="desc")
    assert [m["content"] for m in newest] == [CONVERSATION[5]["content"], CONVERSATION[4]["content"]]
    window, _ = sessions.get_messages(s.session_id, limit=3, strategy="truncate")
    assert [m["role"] for m in window] == ["assistant", "user"]
    budget, _ = sessions.get_messages(s.session_id, strategy="token_budget", budget=10_000)
    assert len(budget) == 6

    assert sessions.save_memory("patient-123", "allergies", ["penicillin", "latex"])
    assert sessions.save_memory("patient-123", "blood_type", "O+")
    assert sessions.save_memory("patient-123", "weight_kg", 70)
    assert sessions.save_memory("patient-123", "weight_kg", 71.5)
    assert sessions.get_memory("patient-123") == {
        "allergies": ["penicillin", "latex"],
        "blood_type": "O+",
        "weight_kg": 71.5,
    }
    assert sessions.get_memory("patient-123", key="blood_type") == {"blood_type": "O+"}
    assert sessions.save_memory("patient-123", "symptom", {"cough": True}, session_id=s.session_id)
    assert sessions.get_memory("patient-123", session_id=s.session_id) == {"symptom": {"cough": True}}
    assert sessions.delete_memory("patient-123", "symptom", session_id=s.session_id) is True
    assert sessions.delete_memory("patient-123", "symptom", session_id=s.session_id) is False

    visit = sessions.get_or_create("patient-123")
    assert visit.session_id not in (s.session_id, "visit-1")
    assert sessions.get_memory("patient-123", key="allergies") == {"allergies": ["penicillin", "latex"]}

    assert sessions.delete_session(s.session_id) is True
    assert sessions.delete_session(s.session_id) is False
    assert sessions.get_memory("patient-123")["blood_type"] == "O+"
    assert {x.session_id for x in sessions.list_sessions("patient-123")} == {visit.session_id, "visit-1"}
    assert len(sessions.list_sessions("patient-123", limit=1)) == 1

    trail = sessions.get_events(session_id=s.session_id)
    assert [e["type"] for e in trail][:2] == ["session.created.v1", "session.messages_added.v1"]
    assert trail[-1]["type"] == "session.deleted.v1"
    assert trail[1]["payload"]["messages"][0]["content"] == CONVERSATION[0]["content"]
    assert sessions.clear_user_memory("patient-123") == 3
    assert sessions.get_memory("patient-123") == {}


async def test_the_original_flow_through_the_sdk(platform: GenAIPlatform) -> None:
    await asyncio.to_thread(original_flow, platform)


def errors(platform: GenAIPlatform) -> None:
    sessions = platform.sessions
    with pytest.raises(NotFoundError) as nf:
        sessions.get_messages("no-such-session")
    assert nf.value.code == "session_not_found" and nf.value.status == grpc.StatusCode.NOT_FOUND
    assert "no-such-session" in nf.value.message
    with pytest.raises(grpc.RpcError):  # code written for the original SDK still catches it
        sessions.add_messages("no-such-session", [{"role": "user", "content": "x"}])
    s = sessions.get_or_create("owner")
    with pytest.raises(PermissionDeniedError) as pd:
        sessions.get_or_create("other", s.session_id)
    assert pd.value.code == "session_owned_by_another_user"
    with pytest.raises(InvalidArgumentError) as bad:
        sessions.get_messages(s.session_id, strategy="summarize")
    assert bad.value.code == "unknown_strategy" and bad.value.details["known"] == [
        "last_n",
        "token_budget",
        "truncate",
    ]
    sessions.add_messages(s.session_id, [{"role": "user", "content": "a"}], expected_version=1)
    with pytest.raises(ConflictError) as conflict:
        sessions.add_messages(s.session_id, [{"role": "user", "content": "b"}], expected_version=1)
    assert conflict.value.details["current_version"] == 2
    with pytest.raises(TypeError):
        sessions.save_memory("owner", "k", object())
    assert isinstance(conflict.value, PlatformError)


async def test_errors_are_typed_with_their_codes(platform: GenAIPlatform) -> None:
    await asyncio.to_thread(errors, platform)


def test_the_address_comes_from_the_argument_the_environment_or_the_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(ADDRESS_ENV, raising=False)
    assert GenAIPlatform().gateway_url == DEFAULT_ADDRESS == "localhost:50052"
    monkeypatch.setenv(ADDRESS_ENV, "gateway:50051")
    assert GenAIPlatform().gateway_url == "gateway:50051"
    assert GenAIPlatform("127.0.0.1:6000").gateway_url == "127.0.0.1:6000"


def unreachable() -> None:
    with GenAIPlatform("127.0.0.1:1", timeout=5) as platform, pytest.raises(PlatformError) as info:
        platform.sessions.get_or_create("x")
    assert info.value.code == "unavailable" and info.value.status == grpc.StatusCode.UNAVAILABLE


async def test_an_unreachable_service_is_unavailable() -> None:
    await asyncio.to_thread(unreachable)

"""The Python SDK: typed results, errors as the service's exceptions, read-your-writes built in."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from litestar.testing import TestClient

from events import LogSettings, Message, ToolCall
from events.schema import FunctionCall
from service.errors import Conflict, InvalidEvent, NotCaughtUp, NotFound, PermissionDenied, SessionDeleted
from service.http.app import create_app
from service.http.shapes import SessionReply
from service.sdk import AsyncSessionsClient, SessionsClient
from service.settings import ServiceSettings

from .helpers import CONVERSATION


async def test_the_async_client_end_to_end(sdk: AsyncSessionsClient) -> None:
    s = await sdk.create_session("alice", metadata={"agent": "a"})
    assert isinstance(s, SessionReply) and s.created is True and s.user_id == "alice"
    assert (await sdk.create_session("alice", s.session_id)).created is False
    assert sdk.positions  # the write's position is carried

    messages = [
        Message(role="user", content="weather?"),
        Message(role="assistant", tool_calls=[ToolCall(id="c1", function=FunctionCall(name="weather"))]),
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ]
    first = await sdk.add_messages(s.session_id, messages, idempotency_key="turn-1")
    again = await sdk.add_messages(s.session_id, messages, idempotency_key="turn-1")
    assert again.duplicate and again.version == first.version == 2 and first.message_count == 3
    await sdk.add_messages(s.session_id, CONVERSATION[4:], expected_version=2)

    page = await sdk.get_messages(s.session_id, limit=2)
    assert [m.seq for m in page.messages] == [1, 2] and page.total == 5 and page.next_cursor
    rest = await sdk.get_messages(s.session_id, limit=10, after=page.next_cursor)
    assert [m.seq for m in rest.messages] == [3, 4, 5] and rest.next_cursor is None
    assert [m.seq async for m in sdk.iter_messages(s.session_id, page_size=2)] == [1, 2, 3, 4, 5]
    assert [m.seq async for m in sdk.iter_messages(s.session_id, page_size=2, order="desc")] == [
        5,
        4,
        3,
        2,
        1,
    ]
    latest = await sdk.get_messages(s.session_id, limit=3, order="desc")
    assert [m.content for m in latest.messages] == ["Thanks!", "It is 18 °C in Paris.", "sunny"]
    assert page.messages[1].tool_calls == [{"id": "c1", "function": {"name": "weather"}, "type": "function"}]

    await sdk.save_memory("alice", "city", "Paris")
    await sdk.save_memory("alice", "city", "Lyon")
    await sdk.save_memory("alice", "note", {"x": 1}, session_id=s.session_id)
    assert await sdk.get_memory("alice") == {"city": "Lyon"}
    assert await sdk.get_memory("alice", session_id=s.session_id, merged=True) == {
        "city": "Lyon",
        "note": {"x": 1},
    }
    assert await sdk.delete_memory("alice", "note", session_id=s.session_id) is True
    assert await sdk.delete_memory("alice", "note", session_id=s.session_id) is False
    await sdk.save_memory("alice", "prefs/units", "metric")
    assert await sdk.get_memory("alice", key="prefs/units") == {"prefs/units": "metric"}
    assert await sdk.delete_memory("alice", "prefs/units") is True
    assert await sdk.clear_memory("alice") == 1
    assert await sdk.get_memory("alice") == {}

    sessions = await sdk.list_sessions("alice")
    assert [x.session_id for x in sessions.sessions] == [s.session_id]
    trail = await sdk.session_events(s.session_id, types=["session.messages_added.v1"])
    assert [e.version for e in trail.events] == [2, 3]
    published = await sdk.publish(
        [
            {
                "type": "memory.saved.v1",
                "aggregate_kind": "memory",
                "aggregate_id": "alice",
                "payload": {"user_id": "alice", "key": "k", "value": True},
            }
        ]
    )
    assert published.results[0].appended
    assert await sdk.get_memory("alice", key="k") == {"k": True}
    deleted = await sdk.delete_session(s.session_id)
    assert deleted.deleted


async def test_the_async_client_raises_the_services_errors(sdk: AsyncSessionsClient) -> None:
    s = await sdk.create_session("bob")
    with pytest.raises(NotFound) as nf:
        await sdk.get_session("missing")
    assert nf.value.code == "session_not_found" and nf.value.details["status"] == 404
    with pytest.raises(PermissionDenied) as pd:
        await sdk.create_session("eve", s.session_id)
    assert pd.value.code == "session_owned_by_another_user"
    await sdk.add_messages(s.session_id, [{"role": "user", "content": "x"}])
    with pytest.raises(Conflict) as c:
        await sdk.add_messages(s.session_id, [{"role": "user", "content": "y"}], expected_version=1)
    assert c.value.details["current_version"] == 2
    with pytest.raises(InvalidEvent) as ie:
        await sdk.add_messages(s.session_id, [{"role": "tool", "tool_call_id": "nope", "content": "z"}])
    assert ie.value.code == "unknown_tool_call"
    await sdk.delete_session(s.session_id)
    with pytest.raises(SessionDeleted):
        await sdk.get_messages(s.session_id)


def test_the_blocking_client_on_the_embedded_default(key_prefix: str) -> None:
    settings = ServiceSettings(log=LogSettings(prefix=key_prefix, partitions=4), read_timeout_s=15)
    with TestClient(app=create_app(settings=settings)) as http, SessionsClient(client=http) as client:
        s = client.create_session("carol", "carol-1")
        assert s.created and s.session_id == "carol-1"
        client.add_messages(s.session_id, CONVERSATION)
        assert client.get_messages(s.session_id, limit=3, order="desc").total == 6
        assert [m.role for m in client.iter_messages(s.session_id, page_size=4)] == [
            m["role"] for m in CONVERSATION
        ]
        client.save_memory("carol", "lang", "fr")
        assert client.get_memory("carol") == {"lang": "fr"}
        with pytest.raises(NotFound):
            client.get_session("nope")
        assert client.events(user_id="carol", types=["memory.saved.v1"]).events[0].payload["value"] == "fr"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def served() -> Iterator[str]:
    """``sessions serve`` with no configuration (the embedded default) in a subprocess."""
    port = _free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("REDIS_URL", "SESSION_STORAGE", "DB_CONNECTION_STRING")
    }
    env.update(SESSIONS_HTTP_PORT=str(port), SESSIONS_PORT=str(_free_port()))  # gRPC beside HTTP
    proc = subprocess.Popen(
        [sys.executable, "-c", "from service.cli import main; main()", "serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass  # not listening yet
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"sessions serve did not start:\n{proc.stdout.read() if proc.stdout else ''}")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        output = proc.communicate(timeout=20)[0]
    assert "EMBEDDED" in output, output


def test_sessions_serve_runs_embedded_with_no_configuration(served: str) -> None:
    with SessionsClient(served) as client:
        s = client.create_session("dan")
        client.add_messages(s.session_id, [{"role": "user", "content": "hello"}])
        assert [m.content for m in client.get_messages(s.session_id).messages] == ["hello"]
        assert client.http.get("/readyz").json()["checks"]["projector"] == "in-process"


def test_a_client_passes_its_positions_and_the_server_waits_for_them(key_prefix: str) -> None:
    # Long enough for the session's own write to be projected even on a loaded machine.
    settings = ServiceSettings(log=LogSettings(prefix=key_prefix, partitions=4), read_timeout_s=1.0)
    with TestClient(app=create_app(settings=settings)) as http, SessionsClient(client=http) as client:
        client.create_session("erin", "e-1")
        # A position no write has reached yet: the server must not answer from behind it.
        client.positions[0] = "99999999999999-0"
        with pytest.raises(NotCaughtUp) as e:
            client.get_session("e-1")
        assert e.value.code == "read_model_behind"

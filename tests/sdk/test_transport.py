"""The SDK over a swapped transport (``httpx.MockTransport``): what it sends, how it reads what comes back,
without a server. Both clients share the request building and the reply reading, so both are run."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import msgspec
import pytest

from sessions_sdk import (
    AsyncSessionsClient,
    NotCaughtUp,
    SessionsClient,
    SessionsError,
    Unavailable,
)

Handler = Callable[[httpx.Request], httpx.Response]
SESSION = {
    "session_id": "s1",
    "user_id": "alice",
    "created_at": "2026-01-01T00:00:00Z",
    "updated_at": "2026-01-01T00:00:00Z",
    "metadata": {},
    "message_count": 0,
    "version": 1,
}


def _refuse(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


async def _call_get_session(handler: Handler, use_async: bool) -> object:
    if use_async:
        async with AsyncSessionsClient(
            client=httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="http://sdk.test")
        ) as client:
            return await client.get_session("s1")
    with SessionsClient(
        client=httpx.Client(transport=httpx.MockTransport(handler), base_url="http://sdk.test")
    ) as client:
        return client.get_session("s1")


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_an_unreachable_service_is_unavailable(use_async: bool) -> None:
    with pytest.raises(Unavailable) as e:
        await _call_get_session(_refuse, use_async)
    assert e.value.code == "connection_failed"
    assert isinstance(e.value.__cause__, httpx.ConnectError)


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize(
    ("status", "body", "cls", "code"),
    [
        (502, b"<html>bad gateway</html>", Unavailable, "http_error"),
        (418, b"teapot", SessionsError, "http_error"),
        (
            503,
            msgspec.json.encode(
                {"status": 503, "code": "read_model_behind", "detail": "behind", "retry_after": 1}
            ),
            NotCaughtUp,
            "read_model_behind",
        ),
    ],
)
async def test_error_replies_become_the_service_errors(
    use_async: bool, status: int, body: bytes, cls: type[SessionsError], code: str
) -> None:
    with pytest.raises(cls) as e:
        await _call_get_session(lambda _: httpx.Response(status, content=body), use_async)
    assert type(e.value) is cls and e.value.code == code and e.value.details["status"] == status


def test_reads_send_back_the_latest_position_of_each_partition_written() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "POST":  # two writes: partition 3 moves forward, partition 5 appears
            position = "3:10-0" if len(seen) == 1 else "3:9-5,5:7-1"
            return httpx.Response(201, json=SESSION, headers={"X-Session-Position": position})
        return httpx.Response(200, json=SESSION)

    transport = httpx.MockTransport(handler)
    with SessionsClient(client=httpx.Client(transport=transport, base_url="http://sdk.test")) as client:
        client.create_session("alice", "s1")
        client.create_session("alice", "s2")
        client.get_session("s1")
    assert "X-Session-Position" not in seen[0].headers  # a write waits for nothing
    assert seen[2].headers["X-Session-Position"] == "3:10-0,5:7-1"
    assert client.positions == {3: "10-0", 5: "7-1"}

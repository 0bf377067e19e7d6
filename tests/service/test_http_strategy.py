"""``GET /v1/sessions/{id}/messages?strategy=...``: the context strategies over HTTP, as over gRPC."""

from __future__ import annotations

import httpx

from service.sdk import AsyncSessionsClient

CALL = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
TURNS = [
    {"role": "user", "content": "u1"},
    {"role": "assistant", "tool_calls": [CALL]},
    {"role": "tool", "tool_call_id": "c1", "content": "21 C"},
    {"role": "assistant", "content": "a2"},
    {"role": "user", "content": "u2"},
    {"role": "assistant", "content": "a3"},
]


async def conversation(http: httpx.AsyncClient) -> str:
    r = await http.post("/v1/sessions", json={"user_id": "alice", "session_id": "strategy-1"})
    assert r.status_code in (200, 201), r.text
    r = await http.post("/v1/sessions/strategy-1/messages", json={"messages": TURNS})
    assert r.status_code == 201, r.text
    return "/v1/sessions/strategy-1/messages"


def contents(body: dict) -> list[str | None]:  # type: ignore[type-arg]
    return [m.get("content") or m["role"] for m in body["messages"]]


async def test_last_n_never_splits_a_tool_call_from_its_result(http: httpx.AsyncClient) -> None:
    path = await conversation(http)
    r = await http.get(path, params={"strategy": "last_n", "limit": 3})
    assert r.status_code == 200 and contents(r.json()) == ["a2", "u2", "a3"] and r.json()["total"] == 6
    # Four would start with the tool result of a call outside the window: the window stays at three.
    r = await http.get(path, params={"strategy": "last_n", "limit": 4})
    assert contents(r.json()) == ["a2", "u2", "a3"]
    r = await http.get(path, params={"strategy": "truncate", "limit": 5})
    assert contents(r.json()) == ["assistant", "21 C", "a2", "u2", "a3"]
    assert "next_cursor" not in r.json()


async def test_token_budget_keeps_the_newest_that_fit(http: httpx.AsyncClient) -> None:
    path = await conversation(http)
    small = (await http.get(path, params={"strategy": "token_budget", "budget": 1})).json()
    large = (await http.get(path, params={"strategy": "token_budget", "budget": 100_000})).json()
    assert len(small["messages"]) < len(large["messages"]) == 6
    assert contents(large)[-1] == "a3"


async def test_unknown_strategies_and_paging_with_a_strategy_are_refused(http: httpx.AsyncClient) -> None:
    path = await conversation(http)
    r = await http.get(path, params={"strategy": "newest_first"})
    assert r.status_code == 400 and r.json()["code"] == "unknown_strategy"
    assert "last_n" in r.json()["detail"]
    r = await http.get(path, params={"strategy": "last_n", "order": "desc"})
    assert r.status_code == 400 and r.json()["code"] == "strategy_with_paging"


async def test_the_sdk_asks_for_a_window(http: httpx.AsyncClient, sdk: AsyncSessionsClient) -> None:
    await conversation(http)
    window = await sdk.get_messages("strategy-1", strategy="last_n", limit=5)
    assert [m.content or m.role for m in window.messages] == ["assistant", "21 C", "a2", "u2", "a3"]
    assert window.total == 6 and window.next_cursor is None

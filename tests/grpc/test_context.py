"""Context strategies: the pure functions (examples and a property), and over gRPC on a long conversation
with tool calls at the window's edge."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proto import sessions_pb2 as pb
from proto import sessions_pb2_grpc as pb_grpc
from service.windows import (
    STRATEGIES,
    UnknownStrategy,
    approx_tokens,
    last_n,
    resolve_strategy,
    select_window,
    token_budget,
    units,
)

from .helpers import proto_messages

Msg = dict[str, Any]


def user(text: str) -> Msg:
    return {"role": "user", "content": text}


def assistant(text: str) -> Msg:
    return {"role": "assistant", "content": text}


def call(*ids: str) -> Msg:
    return {
        "role": "assistant",
        "tool_calls": [
            {"id": i, "type": "function", "function": {"name": "f", "arguments": "{}"}} for i in ids
        ],
    }


def result(call_id: str, text: str = "ok") -> Msg:
    return {"role": "tool", "tool_call_id": call_id, "content": text}


def conversation(turns: int) -> list[Msg]:
    """user, assistant with two tool calls, two results, assistant: five messages a turn."""
    out: list[Msg] = []
    for t in range(turns):
        out += [user(f"q{t}"), call(f"a{t}", f"b{t}"), result(f"a{t}"), result(f"b{t}"), assistant(f"r{t}")]
    return out


def test_last_n_keeps_the_newest_oldest_first() -> None:
    msgs = [user(str(i)) for i in range(10)]
    assert last_n(msgs, 3) == msgs[7:]
    assert last_n(msgs, 30) == msgs
    assert last_n(msgs, 0) == []


def test_a_window_edge_inside_a_tool_call_moves_to_the_unit_boundary() -> None:
    msgs = conversation(3)  # 15 messages; the last turn is q2, call, result, result, r2
    # 2 would cut between the results: the window takes r2 only... and 4 the call's unit plus r2.
    assert last_n(msgs, 2) == msgs[-1:]
    assert last_n(msgs, 4) == msgs[-4:]
    assert last_n(msgs, 5) == msgs[-5:]
    # 7 would start at the previous turn's second result: it stops at the unit boundary instead.
    assert last_n(msgs, 7) == msgs[-6:]
    assert select_window(msgs, "truncate", limit=4) == msgs[-4:]


def test_token_budget_keeps_what_fits_with_a_pluggable_counter() -> None:
    msgs = [user("x" * 40) for _ in range(10)]  # 4 overhead + 10 tokens each
    assert approx_tokens(msgs[0]) == 14
    assert token_budget(msgs, 14 * 3) == msgs[-3:]
    assert token_budget(msgs, 14 * 3 - 1) == msgs[-2:]
    assert token_budget(msgs, 10, counter=lambda m: 1) == msgs
    assert token_budget(conversation(2), 10**6) == conversation(2)
    # The call's unit is four messages: a budget for three of them takes only the final answer.
    tail = conversation(1)
    assert token_budget(tail, 3, counter=lambda m: 1) == tail[-1:]


def test_strategy_names() -> None:
    assert STRATEGIES == ("last_n", "token_budget", "truncate")
    assert resolve_strategy("Truncate") == "last_n"
    with pytest.raises(UnknownStrategy) as info:
        resolve_strategy("summarize")
    assert info.value.code == "unknown_strategy" and info.value.details["known"] == list(STRATEGIES)


def test_orphaned_tool_results_are_left_out() -> None:
    msgs = [result("before"), user("hi"), call("c"), result("c")]
    assert last_n(msgs, 10) == msgs[1:]
    assert units(msgs) == [(0, 1), (1, 2), (2, 4)]


@st.composite
def conversations(draw: st.DrawFn) -> list[Msg]:
    """Valid conversations (every result answers an earlier call, each call answered at most once), possibly
    seen from the middle: a prefix cut off, which can leave orphaned results at the start or inside."""
    out: list[Msg] = []
    pending: list[str] = []
    n = draw(st.integers(0, 40))
    for i in range(n):
        kind = draw(st.sampled_from(["user", "assistant", "call", "result", "result"]))
        if kind == "user":
            out.append(user(str(i)))
        elif kind == "assistant":
            out.append(assistant(str(i)))
        elif kind == "call":
            ids = [f"c{i}_{k}" for k in range(draw(st.integers(1, 3)))]
            pending += ids
            out.append(call(*ids))
        elif pending:
            out.append(result(pending.pop(draw(st.integers(0, len(pending) - 1)))))
    cut = draw(st.integers(0, len(out)))
    return out[cut:]


def _check_window(msgs: list[Msg], window: list[Msg]) -> None:
    ids = {id(m) for m in window}
    if window:
        assert window[0]["role"] != "tool", "a window never starts with a tool result"
        # A suffix of the input, apart from orphans left out.
        first = next(i for i, m in enumerate(msgs) if id(m) == id(window[0]))
        assert [m for m in msgs[first:] if id(m) in ids] == window
    calls_in_window = {tc["id"] for m in window for tc in m.get("tool_calls") or ()}
    for m in window:
        if m["role"] == "tool":
            assert m["tool_call_id"] in calls_in_window, "no tool result without its call"
    for m in msgs:
        if m["role"] == "tool" and m["tool_call_id"] in calls_in_window:
            assert id(m) in ids, "a call is never split from its results"


@settings(max_examples=300, deadline=None)
@given(msgs=conversations(), n=st.integers(0, 45), budget=st.integers(0, 400))
def test_property_windows_never_orphan_nor_split(msgs: list[Msg], n: int, budget: int) -> None:
    by_count = last_n(msgs, n)
    _check_window(msgs, by_count)
    assert len(by_count) <= n
    by_tokens = token_budget(msgs, budget)
    _check_window(msgs, by_tokens)
    assert sum(approx_tokens(m) for m in by_tokens) <= budget


# -- over gRPC -------------------------------------------------------------------------------------------


async def _long_session(stub: pb_grpc.SessionServiceStub, turns: int) -> tuple[str, list[Msg]]:
    s = await stub.GetOrCreateSession(pb.GetOrCreateSessionRequest(user_id="long"))
    msgs = conversation(turns)
    for t in range(turns):  # one append a turn: every call's results land with it
        await stub.AddMessages(
            pb.AddMessagesRequest(session_id=s.session_id, messages=proto_messages(msgs[t * 5 : t * 5 + 5]))
        )
    return str(s.session_id), msgs


def _contents(reply: pb.GetMessagesResponse) -> list[tuple[str, str]]:
    return [
        (m.role, m.content or m.tool_call_id or ",".join(tc.id for tc in m.tool_calls))
        for m in reply.messages
    ]


def _expected(msgs: list[Msg]) -> list[tuple[str, str]]:
    return [
        (m["role"], m.get("content") or m.get("tool_call_id") or ",".join(tc["id"] for tc in m["tool_calls"]))
        for m in msgs
    ]


async def test_each_strategy_over_grpc_on_a_long_conversation(stub: pb_grpc.SessionServiceStub) -> None:
    sid, msgs = await _long_session(stub, 40)  # 200 messages: more than the first tail read_window fetches
    for limit, expected in [
        (7, msgs[-6:]),
        (4, msgs[-4:]),
        (2, msgs[-1:]),
        (61, msgs[-61:]),
        (62, msgs[-61:]),
    ]:
        for name in ("last_n", "truncate"):
            reply = await stub.GetMessages(pb.GetMessagesRequest(session_id=sid, strategy=name, limit=limit))
            assert reply.total_count == 200
            assert _contents(reply) == _expected(expected), (name, limit)
    default = await stub.GetMessages(pb.GetMessagesRequest(session_id=sid, strategy="last_n"))
    assert _contents(default) == _expected(last_n(msgs, 20))

    for budget in (5, 40, 400, 3000):
        reply = await stub.GetMessages(
            pb.GetMessagesRequest(session_id=sid, strategy="token_budget", budget=budget)
        )
        assert _contents(reply) == _expected(token_budget(msgs, budget)), budget
    via_limit = await stub.GetMessages(
        pb.GetMessagesRequest(session_id=sid, strategy="token_budget", limit=40)
    )
    assert _contents(via_limit) == _expected(token_budget(msgs, 40))


async def test_a_unit_longer_than_the_first_fetch_is_read_whole(stub: pb_grpc.SessionServiceStub) -> None:
    s = await stub.GetOrCreateSession(pb.GetOrCreateSessionRequest(user_id="wide"))
    ids = [f"c{i}" for i in range(100)]
    msgs = [user("go"), call(*ids), *[result(i) for i in ids], assistant("done")]
    for part in (msgs[:60], msgs[60:]):  # at most 100 messages an append
        await stub.AddMessages(pb.AddMessagesRequest(session_id=s.session_id, messages=proto_messages(part)))
    reply = await stub.GetMessages(
        pb.GetMessagesRequest(session_id=s.session_id, strategy="token_budget", budget=10**6)
    )
    assert _contents(reply) == _expected(msgs)
    small = await stub.GetMessages(
        pb.GetMessagesRequest(session_id=s.session_id, strategy="last_n", limit=50)
    )
    assert _contents(small) == _expected(msgs[-1:])


class _Page:
    def __init__(self, messages: list[Msg], total: int) -> None:
        self.messages = messages
        self.total = total


class _Queries:
    """The part of ``service.queries.Queries`` that ``read_window`` uses, over a list; counts the reads."""

    def __init__(self, messages: list[Msg]) -> None:
        self.all = messages
        self.reads: list[int] = []

    async def messages(
        self, ctx: object, session_id: str, *, limit: int, order: str, at: object = None
    ) -> _Page:
        assert order == "desc" and at is None
        self.reads.append(limit)
        newest = self.all[::-1][:limit]
        return _Page(newest, len(self.all))


@settings(max_examples=200, deadline=None)
@given(
    msgs=conversations(),
    more=st.integers(0, 150),
    n=st.integers(1, 45),
    budget=st.integers(1, 600),
)
def test_property_reading_a_tail_gives_the_window_of_the_whole_session(
    msgs: list[Msg], more: int, n: int, budget: int
) -> None:
    from service.request import Context
    from service.windows import read_window

    # A whole session (no orphans: the log guarantees every result's call came first), long enough that the
    # first tail read often ends inside the conversation's tool calls.
    full = [
        m
        for m in msgs
        if m["role"] != "tool"
        or any(
            tc["id"] == m["tool_call_id"] for x in msgs[: msgs.index(m)] for tc in x.get("tool_calls") or ()
        )
    ]
    full = [user(f"pad{i}") for i in range(more)] + full
    for name, limit, expected in [
        ("last_n", n, last_n(full, n)),
        ("token_budget", None, token_budget(full, budget)),
    ]:
        queries = _Queries(full)
        window = asyncio.run(
            read_window(queries, Context(), "s", name, limit=limit, budget=budget if limit is None else None)
        )
        assert window.messages == expected
        assert window.total == len(full)

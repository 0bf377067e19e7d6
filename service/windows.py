"""Context strategies: which of a session's messages go into a model's context window.

Pure functions over a list of messages (dicts, ``projections.api.MessageRecord`` or ``events.schema.Message``:
anything with ``role``, ``content``, ``tool_calls``, ``tool_call_id``, ``name``), used by gRPC ``GetMessages``
(its ``strategy`` field) and offered to any adapter through ``select_window`` and ``read_window``:

* ``last_n``: the newest ``n`` messages (``limit``; 20 when absent), oldest first;
* ``token_budget``: the newest messages whose tokens fit ``budget`` (the ``budget`` field, else ``limit``,
  else 4000), oldest first; tokens come from a pluggable counter, by default ``approx_tokens`` (about 4
  characters a token, plus 4 tokens of overhead a message);
* ``truncate``: the name the original platform documented, an alias of ``last_n``.

A window is a suffix of the conversation cut only between *units*: an assistant message that makes tool calls
and every tool result answering them form one unit (with whatever lies between them), so a window never
splits a call from its results and never starts with (or holds) a tool result whose call is outside it. A
unit that does not fit is left out with everything older: a window holds at most ``n`` messages or
``budget`` tokens, so it may be shorter than asked, or empty when the newest unit alone is too big.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from projections.api import MessagePage, Order
from service.consistency import Positions
from service.errors import BadRequest
from service.request import Context

__all__ = [
    "DEFAULT_BUDGET",
    "DEFAULT_LAST_N",
    "STRATEGIES",
    "MessageReader",
    "TokenCounter",
    "UnknownStrategy",
    "Window",
    "approx_tokens",
    "last_n",
    "read_messages",
    "read_window",
    "refuse_paging",
    "resolve_strategy",
    "select_window",
    "token_budget",
    "units",
]

M = TypeVar("M")
TokenCounter = Callable[[Any], int]
"""Tokens of one message."""

DEFAULT_LAST_N = 20
DEFAULT_BUDGET = 4000
CHARS_PER_TOKEN = 4
MESSAGE_OVERHEAD = 4  # role and separators, as chat formats spend them
_ALIASES = {"last_n": "last_n", "token_budget": "token_budget", "truncate": "last_n"}
STRATEGIES: tuple[str, ...] = tuple(_ALIASES)


class UnknownStrategy(BadRequest):
    code = "unknown_strategy"


def resolve_strategy(name: str) -> str:
    """The strategy a name stands for (``truncate`` -> ``last_n``); ``UnknownStrategy`` lists the known."""
    try:
        return _ALIASES[name.strip().lower()]
    except KeyError:
        raise UnknownStrategy(
            f"unknown strategy {name!r}; known: {', '.join(STRATEGIES)}", known=list(STRATEGIES)
        ) from None


def _get(message: Any, field: str) -> Any:
    if isinstance(message, Mapping):
        return message.get(field)
    return getattr(message, field, None)


def _call_ids(message: Any) -> list[str]:
    out = []
    for call in _get(message, "tool_calls") or ():
        call_id = _get(call, "id")
        if call_id:
            out.append(str(call_id))
    return out


def approx_tokens(message: Any) -> int:
    """About 4 characters a token over the text a model sees, plus a fixed overhead per message."""
    chars = len(_get(message, "content") or "") + len(_get(message, "name") or "")
    chars += len(_get(message, "tool_call_id") or "")
    for call in _get(message, "tool_calls") or ():
        function = _get(call, "function") or {}
        chars += len(_get(call, "id") or "") + len(_get(function, "name") or "")
        chars += len(_get(function, "arguments") or "")
    return MESSAGE_OVERHEAD + math.ceil(chars / CHARS_PER_TOKEN)


def _orphans(messages: Sequence[Any]) -> set[int]:
    """Indexes of tool results whose call is not among ``messages`` (it lies before them)."""
    seen: set[str] = set()
    out: set[int] = set()
    for i, m in enumerate(messages):
        if _get(m, "role") == "tool" and str(_get(m, "tool_call_id") or "") not in seen:
            out.add(i)
        seen.update(_call_ids(m))
    return out


def units(messages: Sequence[Any]) -> list[tuple[int, int]]:
    """The conversation cut into units ``(start, end)``, ``end`` exclusive, in order.

    A unit runs from an assistant message with tool calls to the last tool result answering one of them, and
    grows to take in any unit that overlaps it; every other message is a unit of its own."""
    n = len(messages)
    reach = list(range(n))  # the last index each message must stay with
    call_at: dict[str, int] = {}
    for i, m in enumerate(messages):
        for call_id in _call_ids(m):
            call_at[call_id] = i
        if _get(m, "role") == "tool":
            origin = call_at.get(str(_get(m, "tool_call_id") or ""))
            if origin is not None:
                reach[origin] = max(reach[origin], i)
    out: list[tuple[int, int]] = []
    start = 0
    while start < n:
        end = reach[start]
        i = start
        while i <= end:
            end = max(end, reach[i])
            i += 1
        out.append((start, end + 1))
        start = end + 1
    return out


def _window(messages: Sequence[M], fits: Callable[[int, int], bool]) -> tuple[list[M], int, bool]:
    """The longest suffix of whole units, newest unit first, while ``fits(start, end)`` holds for the
    candidate ``messages[start:end]``. Orphan tool results are left out. Returns the window, the index it
    starts at, and whether it left out an orphan."""
    end = len(messages)
    start = end
    for u_start, _u_end in reversed(units(messages)):
        if not fits(u_start, end):
            break
        start = u_start
    orphans = _orphans(messages)
    window = [messages[i] for i in range(start, end) if i not in orphans]
    return window, start, any(i >= start for i in orphans)


def last_n(messages: Sequence[M], n: int) -> list[M]:
    """The newest ``n`` messages (at most), oldest first, never splitting a tool call from its results."""
    return _select(messages, "last_n", limit=n, budget=None, counter=approx_tokens)[0]


def token_budget(messages: Sequence[M], budget: int, counter: TokenCounter = approx_tokens) -> list[M]:
    """The newest messages whose ``counter`` tokens add up to at most ``budget``, oldest first."""
    return _select(messages, "token_budget", limit=None, budget=budget, counter=counter)[0]


def select_window(
    messages: Sequence[M],
    strategy: str,
    *,
    limit: int | None = None,
    budget: int | None = None,
    counter: TokenCounter = approx_tokens,
) -> list[M]:
    """Apply a strategy by name: ``last_n``/``truncate`` keep ``limit`` (default 20) messages;
    ``token_budget`` keeps ``budget`` (else ``limit``, else 4000) tokens."""
    return _select(messages, resolve_strategy(strategy), limit=limit, budget=budget, counter=counter)[0]


def _select(
    messages: Sequence[M], name: str, *, limit: int | None, budget: int | None, counter: TokenCounter
) -> tuple[list[M], int, bool]:
    if name == "last_n":
        n = DEFAULT_LAST_N if limit is None else limit
        return _window(messages, lambda start, end: end - start <= n)
    cap = budget if budget is not None else limit if limit is not None else DEFAULT_BUDGET
    costs = [counter(m) for m in messages]
    suffix = [0] * (len(costs) + 1)
    for i in range(len(costs) - 1, -1, -1):
        suffix[i] = suffix[i + 1] + costs[i]
    return _window(messages, lambda start, end: suffix[start] - suffix[end] <= cap)


class MessageReader(Protocol):
    """What ``read_window`` reads through: ``service.queries.Queries`` (with its read-your-writes wait)."""

    async def messages(
        self,
        ctx: Context,
        session_id: str,
        *,
        limit: int | None = None,
        offset: int | None = None,
        order: Order = "asc",
        after: str | None = None,
        before: str | None = None,
        at: Positions | None = None,
    ) -> MessagePage: ...


@dataclass(frozen=True, slots=True)
class Window:
    """What ``read_window`` returns: the messages, the session's total, and the strategy applied."""

    messages: list[Any]
    total: int
    strategy: str


def refuse_paging(*, offset: int | None, order: str, cursor: str | None) -> None:
    """A strategy chooses its own window; paging parameters beside it are a mistake, not something to drop."""
    if offset or order != "asc" or cursor:
        raise BadRequest(
            "a strategy chooses its own window: offset, order and cursors do not apply",
            code="strategy_with_paging",
        )


async def read_window(
    queries: MessageReader,
    ctx: Context,
    session_id: str,
    strategy: str,
    *,
    limit: int | None = None,
    budget: int | None = None,
    counter: TokenCounter = approx_tokens,
    at: Positions | None = None,
) -> Window:
    """Read just enough of a session's newest messages to apply a strategy: a tail, grown until the window
    no longer reaches its oldest message (whose unit might begin further back) and holds no tool result whose
    call lies before the tail. The same window as ``select_window`` over the whole session."""
    name = resolve_strategy(strategy)  # refuse an unknown name before reading anything
    if (limit is not None and limit < 0) or (budget is not None and budget < 0):
        raise BadRequest("limit and budget must not be negative", code="invalid_limit")
    fetch = max(2 * (limit or DEFAULT_LAST_N), 64) if name == "last_n" else 64
    while True:
        page = await queries.messages(ctx, session_id, limit=fetch, order="desc", at=at)
        tail = list(reversed(page.messages))
        window, start, orphaned = _select(tail, name, limit=limit, budget=budget, counter=counter)
        if len(tail) >= page.total or (start > 0 and not orphaned):
            return Window(window, page.total, name)
        fetch = min(fetch * 4, page.total)


async def read_messages(
    queries: MessageReader,
    ctx: Context,
    session_id: str,
    *,
    strategy: str | None = None,
    limit: int | None = None,
    budget: int | None = None,
    offset: int | None = None,
    order: Order = "asc",
    after: str | None = None,
    before: str | None = None,
    at: Positions | None = None,
) -> MessagePage:
    """A session's messages as both adapters ask for them: a context window when ``strategy`` names one
    (``read_window``; ``next_cursor`` is then None), else a page. Refused, rather than silently dropped or
    guessed: paging parameters beside a strategy, ``budget`` without a strategy, ``token_budget`` sized by
    neither ``budget`` nor ``limit``, and ``after`` with ``before``."""
    strategy = (strategy or "").strip() or None
    if after and before:
        raise BadRequest("after and before page in opposite directions: give one", code="after_with_before")
    if strategy is None:
        if budget is not None:
            raise BadRequest(
                "budget sizes a token_budget window: give strategy too", code="budget_without_strategy"
            )
        return await queries.messages(
            ctx, session_id, limit=limit, offset=offset, order=order, after=after, before=before, at=at
        )
    refuse_paging(offset=offset, order=order, cursor=after or before)
    if resolve_strategy(strategy) == "token_budget" and budget is None and not limit:
        raise BadRequest(
            "token_budget needs a budget (or a limit, read as the budget)", code="budget_required"
        )
    window = await read_window(queries, ctx, session_id, strategy, limit=limit or None, budget=budget, at=at)
    return MessagePage(messages=window.messages, total=window.total)

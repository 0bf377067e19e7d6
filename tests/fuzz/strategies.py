"""Hypothesis strategies of the fuzz tests: JSON values, valid events and mutations of them."""

from __future__ import annotations

import copy
from typing import Any

import msgspec
from hypothesis import strategies as st

from events import encode_event
from events.schema import Event
from tests.events.factories import added, call, cleared, created, deleted, forgotten, mem_deleted, msg, saved

SESSION = "s-fuzz"
USER = "u-fuzz"

# Text that is hard on a parser: control characters, lone surrogates excluded (JSON text must be UTF-8).
odd_text = st.text(st.characters(codec="utf-8"), max_size=40) | st.sampled_from(
    ["", ":", "a:b", "\x00", "\n", "é", "🙂", "\u202e", "x" * 300, "null", "{}", "[]"]
)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | odd_text
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(odd_text, inner, max_size=4),
    max_leaves=12,
)


def valid_events() -> list[Event]:
    """One of each event type, valid against a log holding session SESSION of user USER with call c1 pending
    and USER's memory key k1 (see ``seed``)."""
    return [
        created(SESSION, USER, topic="fuzz"),
        created("s-new", USER, score=1.5),
        added(SESSION, msg("user", "hello")),
        added(SESSION, msg("assistant", None, tool_calls=[call("c2")])),
        added(SESSION, msg("tool", "42", tool_call_id="c1")),
        deleted("s-other"),
        saved(USER, "k1", {"v": [1, 2], "f": 1.5}),
        saved(USER, "k2", "text", session=SESSION),
        mem_deleted(USER, "k1"),
        cleared(USER),
        forgotten(USER),
    ]


def seed() -> list[list[Event]]:
    return [
        [created(SESSION, USER)],
        [added(SESSION, msg("assistant", None, tool_calls=[call("c1")]))],
        [saved(USER, "k1", 1)],
        [created("s-other", USER)],
    ]


def as_json(event: Event) -> dict[str, Any]:
    out: dict[str, Any] = msgspec.json.decode(encode_event(event))
    return out


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out.extend(_paths(v, (*prefix, k)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.extend(_paths(v, (*prefix, i)))
    return out


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[dict[str, Any]]) -> Any:
    """A valid event's JSON with 1 to 3 mutations: a value replaced, a key removed or added, a type tag
    swapped, an id made odd."""
    doc = copy.deepcopy(draw(base))
    doc["id"] = str(draw(st.uuids()))  # fresh: a reused id is answered as a retry before any rule runs
    for _ in range(draw(st.sampled_from([1, 1, 1, 2, 3]))):
        paths = _paths(doc)
        path = draw(st.sampled_from(paths))
        if not path:
            if draw(st.booleans()):
                return draw(json_values)  # not an object at all
            continue
        parent = doc
        for step in path[:-1]:
            parent = parent[step]
        last = path[-1]
        action = draw(st.sampled_from(["replace", "remove", "add", "text"]))
        if action == "replace":
            parent[last] = draw(json_values)
        elif action == "remove":
            del parent[last]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(odd_text)] = draw(json_values)
        else:
            parent[last] = draw(odd_text)
    return doc


def valid_jsons() -> st.SearchStrategy[dict[str, Any]]:
    return st.sampled_from(valid_events()).map(as_json)

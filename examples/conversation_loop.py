"""A conversation loop: each turn builds the model's prompt from the user's memory plus the latest turns of
the session, calls the model, and stores both messages. The model is pluggable; a fake answers by default.

    python examples/conversation_loop.py "Hi, my name is Ada" "What's my name?"   # one argument a turn
    python examples/conversation_loop.py --address host:port < turns.txt         # or one line a turn

Facts are remembered by a small, pluggable extractor (here: "my name is X", "I live in X"), saved as user
memory, so a later session of the same user starts knowing them.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Iterable
from typing import Any

from genai_platform import GenAIPlatform

Model = Callable[[list[dict[str, Any]]], str]
Extractor = Callable[[str], dict[str, Any]]

HISTORY_BUDGET = 2000  # tokens of past turns in a prompt (the token_budget strategy)
_FACTS = [(re.compile(r"\bmy name is (\w+)", re.I), "name"), (re.compile(r"\bI live in (\w+)", re.I), "city")]


def extract_facts(text: str) -> dict[str, Any]:
    return {key: m.group(1) for pattern, key in _FACTS if (m := pattern.search(text))}


def fake_model(prompt: list[dict[str, Any]]) -> str:
    """Deterministic stand-in for a chat model: answers from the memory in the system message."""
    system = prompt[0]["content"]
    question = prompt[-1]["content"].lower()
    name = re.search(r'"name": "(\w+)"', system)
    city = re.search(r'"city": "(\w+)"', system)
    if "name" in question and "?" in question:
        return f"Your name is {name.group(1)}." if name else "I don't know your name yet."
    if "where" in question and "live" in question:
        return f"You live in {city.group(1)}." if city else "I don't know where you live."
    greeting = f"Nice to talk to you, {name.group(1)}." if name else "Hello!"
    return f"{greeting} ({len(prompt) - 2} earlier messages in view)"


def build_prompt(memory: dict[str, Any], history: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    import json

    facts = json.dumps(memory, sort_keys=True)
    system = {
        "role": "system",
        "content": f"You are a helpful assistant. What you know about the user: {facts}",
    }
    turns = [{k: v for k, v in m.items() if k != "timestamp"} for m in history]
    return [system, *turns, {"role": "user", "content": text}]


def converse(
    platform: GenAIPlatform,
    user_id: str,
    turns: Iterable[str],
    *,
    session_id: str | None = None,
    model: Model = fake_model,
    extract: Extractor = extract_facts,
) -> tuple[str, list[str]]:
    """Run the turns in one session (new, or ``session_id``); returns the session id and the replies."""
    sessions = platform.sessions
    session = sessions.get_or_create(user_id, session_id)
    replies = []
    for text in turns:
        for key, value in extract(text).items():
            sessions.save_memory(user_id, key, value)
        memory = sessions.get_memory(user_id, session_id=session.session_id, merged=True)
        history, _ = sessions.get_messages(session.session_id, strategy="token_budget", budget=HISTORY_BUDGET)
        reply = model(build_prompt(memory, history, text))
        sessions.add_messages(
            session.session_id, [{"role": "user", "content": text}, {"role": "assistant", "content": reply}]
        )
        replies.append(reply)
    return session.session_id, replies


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("turns", nargs="*", help="user messages (default: one a line from stdin)")
    parser.add_argument("--address", help="host:port of the service or gateway")
    parser.add_argument("--user", default="demo-user")
    parser.add_argument("--session", help="continue this session")
    args = parser.parse_args(argv)
    turns = args.turns or [line.strip() for line in sys.stdin if line.strip()]
    with GenAIPlatform(args.address) as platform:
        session_id, replies = converse(platform, args.user, turns, session_id=args.session)
    print(f"session {session_id}")
    for text, reply in zip(turns, replies, strict=True):
        print(f"user: {text}\nassistant: {reply}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

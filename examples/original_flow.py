"""The original platform's Session Service walkthrough, against a running service.

    sessions serve &                        # embedded by default: gRPC on localhost:50052
    python examples/original_flow.py        # or --address host:port (default: GENAI_GATEWAY_URL)

Sessions (new, resumed, custom id), a conversation with a tool call, paging, user and session memory, a
return visit in a new session that remembers, and deleting a session while the user's memory stays. Every
step checks what it gets back and the script exits non-zero if anything differs.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from typing import Any

from genai_platform import GenAIPlatform, NotFoundError

WEATHER_CALL = {
    "id": "call_weather_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
}


def check(condition: bool, what: str) -> None:
    if not condition:
        raise SystemExit(f"FAILED: {what}")
    print(f"  ok  {what}")


def run(platform: GenAIPlatform, user_id: str) -> dict[str, Any]:
    sessions = platform.sessions

    print("1. sessions")
    session = sessions.get_or_create(user_id)
    check(bool(session.session_id) and session.user_id == user_id, f"created session {session.session_id}")
    resumed = sessions.get_or_create(user_id, session.session_id)
    check(resumed.session_id == session.session_id, "resumed the same session")
    custom_id = f"{user_id}-chat"
    custom = sessions.get_or_create(user_id, custom_id)
    check(custom.session_id == custom_id, "created a session with a custom id")

    print("2. a conversation with a tool call")
    count = sessions.add_messages(
        session.session_id,
        [
            {"role": "system", "content": "You are a helpful travel assistant."},
            {"role": "user", "content": "What's the weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [WEATHER_CALL]},
            {"role": "tool", "tool_call_id": "call_weather_1", "content": '{"temp_c": 18, "sky": "clear"}'},
            {"role": "assistant", "content": "It's 18 °C and clear in Paris."},
            {"role": "user", "content": "Great, thanks!"},
        ],
    )
    check(count == 6, "added 6 messages")
    messages, total = sessions.get_messages(session.session_id)
    check(
        total == 6 and [m["role"] for m in messages][:3] == ["system", "user", "assistant"],
        "read back in order",
    )
    page, total = sessions.get_messages(session.session_id, limit=2, offset=2)
    check(
        total == 6 and page[0]["tool_calls"][0]["id"] == page[1]["tool_call_id"] == "call_weather_1",
        "limit=2, offset=2: the tool call and its result",
    )
    window, _ = sessions.get_messages(session.session_id, limit=3, strategy="last_n")
    check([m["role"] for m in window] == ["assistant", "user"], "last_n keeps the call with its result")

    print("3. memory")
    sessions.save_memory(user_id, "name", "Ada")
    sessions.save_memory(user_id, "preferences", {"units": "metric", "language": "en"})
    sessions.save_memory(user_id, "home_city", "London")
    sessions.save_memory(user_id, "home_city", "Paris")  # overwritten
    memory = sessions.get_memory(user_id)
    check(
        memory == {"name": "Ada", "preferences": {"units": "metric", "language": "en"}, "home_city": "Paris"},
        "three user memories, one overwritten",
    )
    sessions.save_memory(user_id, "trip", {"dates": "May 3-7"}, session_id=session.session_id)
    check(
        sessions.get_memory(user_id, session_id=session.session_id) == {"trip": {"dates": "May 3-7"}},
        "a session-scoped memory",
    )
    check(sessions.delete_memory(user_id, "trip", session_id=session.session_id), "deleted it")
    check(not sessions.delete_memory(user_id, "trip", session_id=session.session_id), "deleting again: False")

    print("4. a return visit")
    visit = sessions.get_or_create(user_id)
    check(visit.session_id != session.session_id, "a new session")
    check(sessions.get_memory(user_id, key="name") == {"name": "Ada"}, "remembers the user's name")

    print("5. deleting a session")
    check(sessions.delete_session(session.session_id), "deleted the first session")
    try:
        sessions.get_messages(session.session_id)
        check(False, "its messages are gone")
    except NotFoundError as e:
        check(e.code == "session_deleted", "its messages are gone (session_deleted)")
    check(sessions.get_memory(user_id)["name"] == "Ada", "the user's memory survives")
    listed = {s.session_id for s in sessions.list_sessions(user_id)}
    check(listed == {visit.session_id, custom_id}, "the user's sessions")
    cleared = sessions.clear_user_memory(user_id)
    check(cleared == 3, "clear_user_memory removed 3")
    return {"user_id": user_id, "sessions": sorted(listed), "cleared": cleared}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--address", help="host:port of the service or gateway")
    parser.add_argument("--user", default=f"demo-{uuid.uuid4().hex[:8]}")
    args = parser.parse_args(argv)
    with GenAIPlatform(args.address) as platform:
        print(f"Session Service at {platform.gateway_url}, user {args.user}")
        run(platform, args.user)
    print("all steps passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

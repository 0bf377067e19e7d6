"""The examples run as scripts against an in-process server."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from genai_platform import GenAIPlatform

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


async def run_script(name: str, *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLES / name),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    text = out.decode()
    assert proc.returncode == 0, text
    return text


async def test_the_original_flow_example(target: str) -> None:
    out = await run_script("original_flow.py", "--address", target, "--user", "example-user")
    assert "FAILED" not in out and out.rstrip().endswith("all steps passed")
    assert "clear_user_memory removed 3" in out


async def test_the_conversation_loop_example_remembers_across_sessions(target: str) -> None:
    out = await run_script(
        "conversation_loop.py", "--address", target, "--user", "ada", "Hi, my name is Ada", "What's my name?"
    )
    assert "assistant: Nice to talk to you, Ada. (0 earlier messages in view)" in out
    assert "assistant: Your name is Ada." in out
    # A later session of the same user starts knowing the name; the history holds the earlier turns.
    out = await run_script(
        "conversation_loop.py", "--address", target, "--user", "ada", "What's my name?", "Hello"
    )
    assert "assistant: Your name is Ada." in out
    assert "(2 earlier messages in view)" in out

    def sessions() -> int:
        with GenAIPlatform(target) as p:
            return len(p.sessions.list_sessions("ada"))

    assert await asyncio.to_thread(sessions) == 2

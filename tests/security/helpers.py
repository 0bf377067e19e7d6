"""Data of one tenant with marker strings in every field a response could echo, and the leak check."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.security.conftest import Stack

USERS = ["u1", "u2"]
SESSIONS = {"u1": ["s1", "s2"], "u2": ["s3"]}  # the same ids in both tenants


@dataclass
class Seeded:
    tenant: str
    marker: str  # appears in every value this tenant wrote, and nowhere else
    cursors: list[str] = field(default_factory=list)  # cursors its reads returned


def marker_for(tenant: str) -> str:
    return f"MARK{tenant.upper()}{uuid.uuid4().hex[:10]}"


async def seed(stack: Stack, tenant: str, messages_per_session: int = 6) -> Seeded:
    """Sessions, messages, user- and session-scoped memory of ``tenant`` (through its writer key)."""
    writer = f"{tenant}_writer"
    seeded = Seeded(tenant, marker_for(tenant))
    m = seeded.marker
    for user in USERS:
        for sid in SESSIONS[user]:
            r = await stack.call(
                writer,
                "POST",
                "/v1/sessions",
                json={"user_id": user, "session_id": sid, "metadata": {"m": m}},
            )
            assert r.status_code == 201, r.text
            msgs = [
                {"role": "user", "content": f"{m} {sid} message {i}", "metadata": {"m": m}}
                for i in range(messages_per_session)
            ]
            r = await stack.call(writer, "POST", f"/v1/sessions/{sid}/messages", json={"messages": msgs})
            assert r.status_code == 201, r.text
            r = await stack.call(
                writer,
                "PUT",
                f"/v1/users/{user}/memory/topic",
                json={"value": f"{m} session", "session_id": sid},
            )
            assert r.status_code == 200, r.text
        for key in ("topic", "prefs/lang", f"k-{m}"):
            r = await stack.call(
                writer, "PUT", f"/v1/users/{user}/memory/{key}", json={"value": {"v": f"{m} {key}"}}
            )
            assert r.status_code == 200, r.text
    return seeded


def leaks(response: httpx.Response | Any, marker: str) -> bool:
    """Whether ``marker`` is anywhere in a response: body or any header (HTTP), or a gRPC reply/error."""
    if isinstance(response, httpx.Response):
        if marker in response.text:
            return True
        return any(marker in k or marker in v for k, v in response.headers.items())
    return marker in str(response)

"""Reads of sealed, erased and plain values: a key that is gone reads as erased (never an error, never
ciphertext); with ``SESSIONS_ENCRYPTION=off`` and for events published raw, plain text passes through."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import httpx
import pytest

from service.app import Application
from service.http.app import create_app
from tests.fix_service import close_application, make_application

from .erasure_helpers import CANARY, secret, write_user


async def test_a_lost_key_reads_as_erased(application: Application, http: httpx.AsyncClient) -> None:
    await write_user(http, "frank", ["s-frank"])
    await application.data_keys.destroy("default", "frank")  # the key alone, the rows stay
    messages = (await http.get("/v1/sessions/s-frank/messages")).json()["messages"]
    assert [(m["role"], m.get("content"), m.get("metadata")) for m in messages] == [
        ("user", None, {"erased": True}),
        ("assistant", None, {"erased": True}),
        ("tool", None, {"erased": True}),
    ]
    assert messages[1]["tool_calls"][0]["function"] == {"name": "lookup", "arguments": ""}
    memory = await http.get("/v1/users/frank/memory", params={"session_id": "s-frank", "merged": "true"})
    assert memory.json()["memories"] == {"profile": None, "note-s-frank": None}
    events = (await http.get("/v1/events", params={"user_id": "frank"})).json()["events"]
    sealed = [e for e in events if e["type"] in ("session.messages_added.v1", "memory.saved.v1")]
    assert len(sealed) == 3 and all(e["payload"]["erased"] is True for e in sealed)
    assert CANARY not in str(events) and "enc:v1:" not in str(events)
    # New writes get a new key and read back; the old ones stay erased.
    r = await http.post(
        "/v1/sessions/s-frank/messages", json={"messages": [{"role": "user", "content": "new"}]}
    )
    assert r.status_code in (200, 201), r.text
    contents = [
        m.get("content") for m in (await http.get("/v1/sessions/s-frank/messages")).json()["messages"]
    ]
    assert contents == [None, None, None, "new"]


@pytest.fixture
async def plain_app(key_prefix: str, request: pytest.FixtureRequest) -> AsyncIterator[Application]:
    app, log = await make_application("embedded", key_prefix, request)
    app.settings = dataclasses.replace(app.settings, encryption=False)
    app.commands.data_keys = None  # what Application does with SESSIONS_ENCRYPTION=off
    yield app
    await close_application(app, log, "embedded")


async def test_encryption_off_and_raw_events_are_plain(plain_app: Application) -> None:
    transport = httpx.ASGITransport(app=create_app(plain_app))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        await write_user(http, "gina", ["s-gina"])
        raw = {
            "type": "memory.saved.v1",
            "id": "0192f1d4-6c1e-7a3b-9f4e-2b1c0d9e8f7a",
            "aggregate_kind": "memory",
            "aggregate_id": "gina",
            "occurred_at": "2026-11-25T09:14:03.120Z",
            "payload": {"user_id": "gina", "key": "raw", "value": "published plain"},
        }
        assert (await http.post("/v1/events", json={"events": [raw]})).status_code == 200
        messages = (await http.get("/v1/sessions/s-gina/messages")).json()["messages"]
        assert messages[0]["content"] == secret("question-s-gina")
        memory = (await http.get("/v1/users/gina/memory")).json()["memories"]
        assert memory == {"profile": {"deep": [secret("umem")]}, "raw": "published plain"}
        entries = [
            e for p in range(plain_app.log.partitions) for e in await plain_app.log.read(p, count=1000)
        ]
        assert any(secret("umem").encode() in e.data for e in entries)  # plain in the log: nothing to shred
        assert await plain_app.data_keys.get("default", "gina") is None
        # Forgetting still empties the read models.
        assert (await http.post("/v1/users/gina/forget")).status_code == 200
        assert (await http.get("/v1/users/gina/memory")).json()["memories"] == {}
        assert (await http.get("/v1/users/gina/sessions")).json()["sessions"] == []

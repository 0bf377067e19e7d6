"""End to end over HTTP (the Litestar app, in process), on the embedded default and on the real servers."""

from __future__ import annotations

import re

import httpx

from .helpers import CONVERSATION


async def create(
    http: httpx.AsyncClient, user_id: str, session_id: str | None = None, **extra: object
) -> httpx.Response:
    body: dict[str, object] = {"user_id": user_id, **extra}
    if session_id is not None:
        body["session_id"] = session_id
    return await http.post("/v1/sessions", json=body)


async def test_sessions_are_created_resumed_and_created_with_a_custom_id(http: httpx.AsyncClient) -> None:
    r = await create(http, "alice", metadata={"agent": "weather"})
    assert r.status_code == 201
    first = r.json()
    assert (
        first["created"] is True and first["user_id"] == "alice" and first["metadata"] == {"agent": "weather"}
    )
    assert first["message_count"] == 0 and first["created_at"] == first["updated_at"]
    assert re.fullmatch(r"\d+:\d+-\d+", r.headers["x-session-position"])

    r = await create(http, "alice", first["session_id"])
    assert r.status_code == 200
    assert r.json()["session_id"] == first["session_id"] and r.json()["created"] is False
    assert r.json()["metadata"] == {"agent": "weather"}

    r = await create(http, "alice", "my-own-id")
    assert r.status_code == 201 and r.json()["session_id"] == "my-own-id"
    r = await http.get("/v1/sessions/my-own-id")
    assert r.status_code == 200 and r.json()["user_id"] == "alice"


async def test_a_conversation_with_a_tool_call_reads_back_in_order_and_pages(http: httpx.AsyncClient) -> None:
    sid = (await create(http, "bob")).json()["session_id"]
    r = await http.post(f"/v1/sessions/{sid}/messages", json={"messages": CONVERSATION[:2]})
    assert r.status_code == 201 and r.json()["message_count"] == 2
    r = await http.post(
        f"/v1/sessions/{sid}/messages", json={"messages": CONVERSATION[2:], "expected_version": 2}
    )
    assert r.status_code == 201, r.text
    written = r.json()
    assert written["message_count"] == 6 and written["version"] == 3
    assert written["position"]["id"] in r.headers["x-session-position"]

    r = await http.get(f"/v1/sessions/{sid}/messages")
    page = r.json()
    assert page["total"] == 6 and "next_cursor" not in page
    assert [m["role"] for m in page["messages"]] == [m["role"] for m in CONVERSATION]
    assert [m["seq"] for m in page["messages"]] == [1, 2, 3, 4, 5, 6]
    call = page["messages"][2]["tool_calls"][0]
    assert call["id"] == "call_1" and call["function"]["name"] == "weather"
    assert page["messages"][3]["tool_call_id"] == "call_1"
    assert all(m["timestamp"] > 0 for m in page["messages"])  # filled in when absent

    seen, cursor, pages = [], None, 0
    while True:
        params: dict[str, object] = {"limit": 2}
        if cursor:
            params["after"] = cursor
        body = (await http.get(f"/v1/sessions/{sid}/messages", params=params)).json()
        pages += 1
        assert body["total"] == 6 and len(body["messages"]) == 2
        seen += [m["seq"] for m in body["messages"]]
        cursor = body.get("next_cursor")
        if cursor is None:
            break
    assert pages == 3 and seen == [1, 2, 3, 4, 5, 6]

    body = (await http.get(f"/v1/sessions/{sid}/messages", params={"limit": 2, "offset": 2})).json()
    assert [m["seq"] for m in body["messages"]] == [3, 4] and body["total"] == 6

    latest = (await http.get(f"/v1/sessions/{sid}/messages", params={"limit": 3, "order": "desc"})).json()
    assert [m["seq"] for m in latest["messages"]] == [6, 5, 4] and latest["total"] == 6
    assert latest["messages"][0]["content"] == "Thanks!"

    session = (await http.get(f"/v1/sessions/{sid}")).json()
    assert session["message_count"] == 6 and session["updated_at"] >= session["created_at"]


async def test_an_idempotency_key_makes_a_retry_return_the_first_result(http: httpx.AsyncClient) -> None:
    sid = (await create(http, "carol")).json()["session_id"]
    msg = {"messages": [{"role": "user", "content": "once"}]}
    first = await http.post(f"/v1/sessions/{sid}/messages", json=msg, headers={"Idempotency-Key": "k-1"})
    retry = await http.post(f"/v1/sessions/{sid}/messages", json=msg, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == retry.status_code == 201
    assert retry.json()["duplicate"] is True and retry.headers["idempotent-replayed"] == "true"
    for field in ("version", "position", "event_ids", "message_count"):
        assert retry.json()[field] == first.json()[field]
    other = await http.post(f"/v1/sessions/{sid}/messages", json=msg, headers={"Idempotency-Key": "k-2"})
    assert other.json()["duplicate"] is False and other.json()["message_count"] == 2
    assert (await http.get(f"/v1/sessions/{sid}/messages")).json()["total"] == 2


async def test_memory_user_and_session_scoped_overwritten_deleted_and_cleared(
    http: httpx.AsyncClient,
) -> None:
    s1 = (await create(http, "dave")).json()["session_id"]
    base = "/v1/users/dave/memory"
    assert (await http.put(f"{base}/city", json={"value": "Paris"})).status_code == 200
    assert (
        await http.put(f"{base}/prefs", json={"value": {"units": "metric", "langs": ["fr", "en"]}})
    ).status_code == 200
    assert (await http.put(f"{base}/city", json={"value": "Lyon"})).json()["version"] >= 3  # overwritten
    r = await http.put(f"{base}/mood", json={"value": "curious", "session_id": s1})
    assert r.status_code == 200 and r.json()["session_id"] == s1
    await http.put(f"{base}/city", json={"value": "Nice", "session_id": s1})

    assert (await http.get(base)).json() == {
        "memories": {"city": "Lyon", "prefs": {"units": "metric", "langs": ["fr", "en"]}}
    }
    assert (await http.get(base, params={"session_id": s1})).json() == {
        "memories": {"mood": "curious", "city": "Nice"}
    }
    merged = (await http.get(base, params={"session_id": s1, "merged": "true"})).json()["memories"]
    assert merged == {"city": "Nice", "prefs": {"units": "metric", "langs": ["fr", "en"]}, "mood": "curious"}
    assert (await http.get(base, params={"key": "city"})).json() == {"memories": {"city": "Lyon"}}
    assert (await http.get(base, params={"key": "nope"})).json() == {"memories": {}}

    # A second session of the same user sees the user's memory, not the first session's.
    s2 = (await create(http, "dave")).json()["session_id"]
    merged2 = (await http.get(base, params={"session_id": s2, "merged": "true"})).json()["memories"]
    assert merged2 == {"city": "Lyon", "prefs": {"units": "metric", "langs": ["fr", "en"]}}

    r = await http.delete(f"{base}/prefs")
    assert r.status_code == 200 and r.json()["deleted"] is True
    assert (await http.delete(f"{base}/prefs")).json()["deleted"] is False
    assert (await http.delete(f"{base}/mood", params={"session_id": s1})).json()["deleted"] is True
    assert (await http.get(base)).json() == {"memories": {"city": "Lyon"}}

    await http.put(f"{base}/todo", json={"value": [1, 2], "session_id": s2})
    r = await http.delete(base)  # every scope: user (city), s1 (city), s2 (todo)
    assert r.status_code == 200 and r.json()["count"] == 3
    assert len(r.json()["positions"]) >= 1
    for params in ({}, {"session_id": s1}, {"session_id": s2}):
        assert (await http.get(base, params=params)).json() == {"memories": {}}
    assert (await http.delete(base)).json()["count"] == 0


async def test_a_deleted_session_is_gone_and_the_user_memory_is_kept(http: httpx.AsyncClient) -> None:
    sid = (await create(http, "erin")).json()["session_id"]
    await http.post(f"/v1/sessions/{sid}/messages", json={"messages": [{"role": "user", "content": "hi"}]})
    await http.put("/v1/users/erin/memory/name", json={"value": "Erin"})
    await http.put("/v1/users/erin/memory/scratch", json={"value": 1, "session_id": sid})
    r = await http.delete(f"/v1/sessions/{sid}")
    assert r.status_code == 200 and r.json() == {
        "session_id": sid,
        "deleted": True,
        "position": r.json()["position"],
    }
    assert (await http.get(f"/v1/sessions/{sid}")).status_code == 410
    assert (await http.get(f"/v1/sessions/{sid}/messages")).status_code == 410
    assert (await http.get("/v1/users/erin/memory")).json() == {"memories": {"name": "Erin"}}
    sessions = (await http.get("/v1/users/erin/sessions")).json()["sessions"]
    assert sid not in [s["session_id"] for s in sessions]


async def test_a_users_sessions_newest_first_with_a_cursor(http: httpx.AsyncClient) -> None:
    ids = [(await create(http, "fay", f"fay-{i}")).json()["session_id"] for i in range(5)]
    await http.post("/v1/sessions/fay-1/messages", json={"messages": [{"role": "user", "content": "bump"}]})
    await create(http, "gus")
    got, cursor = [], None
    while True:
        params: dict[str, object] = {"limit": 2, **({"after": cursor} if cursor else {})}
        body = (await http.get("/v1/users/fay/sessions", params=params)).json()
        assert len(body["sessions"]) <= 2
        got += [s["session_id"] for s in body["sessions"]]
        cursor = body.get("next_cursor")
        if cursor is None:
            break
    assert got == ["fay-1", *reversed([i for i in ids if i != "fay-1"])]


async def test_the_audit_trail_shows_every_event_with_its_envelope(http: httpx.AsyncClient) -> None:
    sid = (await create(http, "hal")).json()["session_id"]
    headers = {"X-Actor": "model:gpt-test", "X-Correlation-Id": "corr-42"}
    r = await http.post(f"/v1/sessions/{sid}/messages", json={"messages": CONVERSATION[:2]}, headers=headers)
    assert r.headers["x-correlation-id"] == "corr-42"
    await http.put("/v1/users/hal/memory/k", json={"value": 1})

    trail = (await http.get(f"/v1/sessions/{sid}/events")).json()["events"]
    assert [e["type"] for e in trail] == ["session.created.v1", "session.messages_added.v1"]
    added = trail[1]
    assert added["actor_kind"] == "model" and added["actor_id"] == "gpt-test"
    assert added["correlation_id"] == "corr-42" and added["version"] == 2
    assert added["payload"]["messages"][1]["content"] == CONVERSATION[1]["content"]
    assert trail[0]["actor_kind"] == "user" and trail[0]["actor_id"] == "hal"

    by_user = (await http.get("/v1/events", params={"user_id": "hal"})).json()["events"]
    assert {e["type"] for e in by_user} == {
        "session.created.v1",
        "session.messages_added.v1",
        "memory.saved.v1",
    }
    only = (await http.get("/v1/events", params={"user_id": "hal", "type": "memory.saved.v1"})).json()[
        "events"
    ]
    assert [e["aggregate_kind"] for e in only] == ["memory"]
    by_actor = (await http.get("/v1/events", params={"actor_kind": "model", "actor_id": "gpt-test"})).json()
    assert [e["event_id"] for e in by_actor["events"]] == [added["event_id"]]
    page = (await http.get("/v1/events", params={"user_id": "hal", "limit": 2})).json()
    assert len(page["events"]) == 2 and page["next_cursor"]
    rest = (
        await http.get("/v1/events", params={"user_id": "hal", "limit": 2, "after": page["next_cursor"]})
    ).json()
    assert len(rest["events"]) == 1 and rest.get("next_cursor") is None


async def test_other_services_publish_a_batch_grouped_by_aggregate(http: httpx.AsyncClient) -> None:
    events = [
        {
            "type": "session.created.v1",
            "aggregate_kind": "session",
            "aggregate_id": "pub-1",
            "actor": {"kind": "service", "id": "importer"},
            "payload": {"user_id": "ivy"},
        },
        {
            "type": "memory.saved.v1",
            "aggregate_kind": "memory",
            "aggregate_id": "ivy",
            "payload": {"user_id": "ivy", "key": "source", "value": "import"},
        },
        {
            "type": "session.messages_added.v1",
            "aggregate_kind": "session",
            "aggregate_id": "pub-1",
            "payload": {"messages": [{"role": "user", "content": "imported", "timestamp": 1700000000000}]},
        },
    ]
    r = await http.post("/v1/events", json={"events": events})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [(x["aggregate_kind"], x["aggregate_id"], x["version"]) for x in results] == [
        ("session", "pub-1", 2),
        ("memory", "ivy", 1),
    ]
    msgs = (await http.get("/v1/sessions/pub-1/messages")).json()["messages"]
    assert [(m["content"], m["timestamp"]) for m in msgs] == [("imported", 1700000000000)]
    assert (await http.get("/v1/users/ivy/memory")).json() == {"memories": {"source": "import"}}


async def test_operations_endpoints(http: httpx.AsyncClient) -> None:
    assert (await http.get("/healthz")).json() == {"status": "ok"}
    ready = await http.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["log"] == "ok"
    await create(http, "jay")
    await http.get("/v1/sessions/nope")
    await http.post(
        "/v1/sessions",
        json={"user_id": "mallory", "session_id": (await create(http, "kim")).json()["session_id"]},
    )
    metrics = await http.get("/metrics")
    assert metrics.status_code == 200
    text = metrics.text
    assert 'sessions_http_requests_total{method="POST",route="/v1/sessions",status="201"} 2.0' in text
    assert 'sessions_appends_total{command="create_session",outcome="appended"} 2.0' in text
    assert (
        'sessions_http_requests_total{method="GET",route="/v1/sessions/{session_id}",status="404"} 1.0'
        in text
    )
    assert "sessions_projector_lag_events{partition=" in text and "sessions_dead_letters" in text
    spec = (await http.get("/openapi.json")).json()
    for path in (
        "/v1/sessions",
        "/v1/sessions/{session_id}/messages",
        "/v1/users/{user_id}/memory/{key}",
        "/v1/events",
        "/v1/sessions/{session_id}/events",
        "/v1/users/{user_id}/sessions",
    ):
        assert path in spec["paths"], path


async def test_tenants_are_isolated(http: httpx.AsyncClient) -> None:
    a, b = {"X-Tenant-Id": "acme"}, {"X-Tenant-Id": "globex"}
    assert (
        await http.post("/v1/sessions", json={"user_id": "alice", "session_id": "s"}, headers=a)
    ).status_code == 201
    assert (
        await http.post("/v1/sessions", json={"user_id": "bob", "session_id": "s"}, headers=b)
    ).status_code == 201
    await http.post(
        "/v1/sessions/s/messages", json={"messages": [{"role": "user", "content": "acme"}]}, headers=a
    )
    await http.put("/v1/users/alice/memory/k", json={"value": "acme"}, headers=a)
    assert (await http.get("/v1/sessions/s", headers=b)).json()["user_id"] == "bob"
    assert (await http.get("/v1/sessions/s/messages", headers=b)).json()["total"] == 0
    assert (await http.get("/v1/users/alice/memory", headers=b)).json() == {"memories": {}}
    assert (await http.get("/v1/users/alice/memory", headers=a)).json() == {"memories": {"k": "acme"}}
    assert (await http.get("/v1/sessions/s")).status_code == 404  # the default tenant has no such session
    trail = (await http.get("/v1/events", params={"user_id": "alice"}, headers=a)).json()["events"]
    assert {e["tenant"] for e in trail} == {"acme"}


async def test_memory_keys_may_hold_slashes(http: httpx.AsyncClient) -> None:
    await create(http, "lou")
    assert (await http.put("/v1/users/lou/memory/prefs/theme", json={"value": "dark"})).status_code == 200
    r = await http.put("/v1/users/lou/memory/prefs%2Flang", json={"value": "fr"})
    assert r.status_code == 200 and r.json()["key"] == "prefs/lang"
    assert (await http.get("/v1/users/lou/memory")).json() == {
        "memories": {"prefs/theme": "dark", "prefs/lang": "fr"}
    }
    assert (await http.get("/v1/users/lou/memory", params={"key": "prefs/theme"})).json() == {
        "memories": {"prefs/theme": "dark"}
    }
    assert (await http.delete("/v1/users/lou/memory/prefs/theme")).json()["deleted"] is True
    assert (await http.get("/v1/users/lou/memory")).json() == {"memories": {"prefs/lang": "fr"}}

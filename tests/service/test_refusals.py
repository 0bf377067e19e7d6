"""Every refusal is problem+json with a stable code and a message; never a stack trace, never a 500."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from events import LogSettings
from events.settings import Limits
from service.app import Application
from service.http.app import create_app
from tests.fix_service import close_application, make_application

from .helpers import CONVERSATION, assert_problem


async def new_session(http: httpx.AsyncClient, user: str = "alice", sid: str | None = None) -> str:
    body = {"user_id": user, **({"session_id": sid} if sid else {})}
    r = await http.post("/v1/sessions", json=body)
    assert r.status_code in (200, 201), r.text
    return str(r.json()["session_id"])


async def test_unknown_and_deleted_sessions(http: httpx.AsyncClient) -> None:
    assert_problem(await http.get("/v1/sessions/nope"), 404, "session_not_found")
    assert_problem(await http.get("/v1/sessions/nope/messages"), 404, "session_not_found")
    assert_problem(await http.get("/v1/sessions/nope/events"), 404, "session_not_found")
    msg = {"messages": [{"role": "user", "content": "hi"}]}
    assert_problem(await http.post("/v1/sessions/nope/messages", json=msg), 404, "session_not_found")
    assert_problem(await http.delete("/v1/sessions/nope"), 404, "session_not_found")
    assert_problem(
        await http.put("/v1/users/alice/memory/k", json={"value": 1, "session_id": "nope"}),
        404,
        "memory_session_not_found",
    )
    assert_problem(
        await http.get("/v1/users/alice/memory", params={"session_id": "nope"}), 404, "session_not_found"
    )

    sid = await new_session(http)
    assert (await http.delete(f"/v1/sessions/{sid}")).status_code == 200
    assert_problem(await http.get(f"/v1/sessions/{sid}"), 410, "session_deleted")
    assert_problem(await http.post(f"/v1/sessions/{sid}/messages", json=msg), 410, "session_deleted")
    assert_problem(await http.delete(f"/v1/sessions/{sid}"), 410, "session_deleted")
    assert_problem(
        await http.post("/v1/sessions", json={"user_id": "alice", "session_id": sid}), 410, "session_deleted"
    )
    assert_problem(
        await http.put("/v1/users/alice/memory/k", json={"value": 1, "session_id": sid}),
        410,
        "session_deleted",
    )


async def test_another_users_session_is_refused(http: httpx.AsyncClient) -> None:
    sid = await new_session(http, "alice")
    assert_problem(
        await http.post("/v1/sessions", json={"user_id": "mallory", "session_id": sid}),
        403,
        "session_owned_by_another_user",
    )
    assert_problem(
        await http.put("/v1/users/mallory/memory/k", json={"value": 1, "session_id": sid}),
        403,
        "memory_session_not_owned",
    )
    assert_problem(
        await http.get("/v1/users/mallory/memory", params={"session_id": sid}),
        403,
        "memory_session_not_owned",
    )


async def test_a_stale_expected_version_is_a_conflict_with_the_current_version(
    http: httpx.AsyncClient,
) -> None:
    sid = await new_session(http)
    msg = {"messages": [{"role": "user", "content": "hi"}], "expected_version": 1}
    assert (await http.post(f"/v1/sessions/{sid}/messages", json=msg)).status_code == 201
    body = assert_problem(await http.post(f"/v1/sessions/{sid}/messages", json=msg), 409, "version_conflict")
    assert body["current_version"] == 2 and body["expected_version"] == 1
    assert (await http.get(f"/v1/sessions/{sid}/messages")).json()["total"] == 1  # nothing half-written


async def test_broken_conversations_are_refused_whole(http: httpx.AsyncClient) -> None:
    sid = await new_session(http)
    url = f"/v1/sessions/{sid}/messages"
    cases = [
        ([{"role": "tool", "tool_call_id": "ghost", "content": "x"}], "unknown_tool_call"),
        ([{"role": "user", "tool_calls": CONVERSATION[2]["tool_calls"]}], "tool_calls_not_allowed"),
        ([{"role": "tool", "content": "x"}], "tool_call_id_required"),
        ([{"role": "assistant"}], "missing_content"),
        (
            [*CONVERSATION[2:4], {"role": "tool", "tool_call_id": "call_1", "content": "again"}],
            "tool_call_already_answered",
        ),
    ]
    for messages, code in cases:
        assert_problem(await http.post(url, json={"messages": messages}), 422, code)
    assert (await http.get(url)).json()["total"] == 0


async def test_malformed_requests_are_400(http: httpx.AsyncClient) -> None:
    sid = await new_session(http)
    assert_problem(await http.post("/v1/sessions", json={"user_id": 5}), 400, "invalid_request")
    assert_problem(await http.post("/v1/sessions", json={}), 400, "invalid_request")
    # issue 15 item 10: a bad id is invalid_id wherever it is (it was invalid_request in a body only)
    assert_problem(await http.post("/v1/sessions", json={"user_id": ""}), 400, "invalid_id")
    assert_problem(
        await http.post("/v1/sessions", json={"user_id": "a", "surprise": 1}), 400, "invalid_request"
    )
    r = await http.post("/v1/sessions", content=b"{not json", headers={"content-type": "application/json"})
    assert_problem(r, 400, "invalid_request")
    url = f"/v1/sessions/{sid}/messages"
    assert_problem(await http.post(url, json={"messages": []}), 400, "invalid_request")
    assert_problem(
        await http.post(url, json={"messages": [{"role": "robot", "content": "x"}]}), 400, "invalid_request"
    )
    assert_problem(
        await http.post(url, json={"messages": [{"role": "user", "content": "x"}], "expected_version": -1}),
        400,
        "invalid_request",
    )
    assert_problem(await http.get(url, params={"limit": -1}), 400, "invalid_request")
    assert_problem(await http.get(url, params={"order": "sideways"}), 400, "invalid_request")
    assert_problem(await http.get(url, params={"after": "garbage"}), 400, "invalid_cursor")
    assert_problem(await http.get(url, params={"min_position": "yesterday"}), 400, "invalid_position")
    assert_problem(await http.get(url, headers={"X-Session-Position": "3:x"}), 400, "invalid_position")
    assert_problem(await http.get(url, params={"min_position": "99:1-0"}), 400, "invalid_position")
    assert_problem(
        await http.get("/v1/users/alice/memory", params={"merged": "true"}), 400, "merged_needs_session"
    )
    assert_problem(
        await http.put("/v1/users/alice/memory/k", json={"session_id": sid}), 400, "invalid_request"
    )
    assert_problem(
        await http.post(
            url, json={"messages": [{"role": "user", "content": "x"}]}, headers={"X-Actor": "robot"}
        ),
        400,
        "invalid_actor",
    )
    assert_problem(
        await http.post(
            url, json={"messages": [{"role": "user", "content": "x"}]}, headers={"Idempotency-Key": "k" * 300}
        ),
        400,
        "invalid_idempotency_key",
    )
    assert_problem(
        await http.post("/v1/events", json={"events": [{"type": "nope.v1"}]}), 422, "unknown_event_type"
    )
    assert_problem(
        await http.post("/v1/events", json={"events": [{"type": "session.created.v1"}]}),
        422,
        "undecodable_event",
    )
    assert_problem(await http.get("/v1/nothing-here"), 404, "route_not_found")
    assert_problem(await http.patch("/v1/sessions"), 405, "method_not_allowed")


async def test_a_publish_batch_stops_at_the_first_refused_aggregate(http: httpx.AsyncClient) -> None:
    events = [
        {
            "type": "session.created.v1",
            "aggregate_kind": "session",
            "aggregate_id": "pb-1",
            "payload": {"user_id": "u"},
        },
        {
            "type": "session.messages_added.v1",
            "aggregate_kind": "session",
            "aggregate_id": "pb-missing",
            "payload": {"messages": [{"role": "user", "content": "x"}]},
        },
    ]
    body = assert_problem(await http.post("/v1/events", json={"events": events}), 404, "session_not_found")
    assert body["failed_aggregate"] == {"kind": "session", "id": "pb-missing"}
    assert len(body["appended"]) == 1
    tenant = await http.post("/v1/events", json={"events": events[:1]}, headers={"X-Tenant-Id": "other"})
    assert_problem(tenant, 403, "tenant_mismatch")  # issue 15 item 10: one status everywhere


@pytest.fixture
async def tiny_limits(key_prefix: str, request: pytest.FixtureRequest) -> AsyncIterator[httpx.AsyncClient]:
    limits = Limits(max_content_bytes=64, max_messages=3, max_value_bytes=32, max_memory_keys=2)
    app, log = await make_application(
        "embedded",
        key_prefix,
        request,
        log_settings=LogSettings(prefix=key_prefix, partitions=4, limits=limits),
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(app)), base_url="http://t"
    ) as client:
        yield client
    await close_application(app, log, "embedded")


async def test_limits_are_413(tiny_limits: httpx.AsyncClient) -> None:
    http = tiny_limits
    sid = await new_session(http)
    url = f"/v1/sessions/{sid}/messages"
    assert_problem(
        await http.post(url, json={"messages": [{"role": "user", "content": "x" * 65}]}),
        413,
        "content_too_large",
    )
    assert_problem(
        await http.post(url, json={"messages": [{"role": "user", "content": "x"}] * 4}),
        413,
        "too_many_messages",
    )
    assert_problem(
        await http.put("/v1/users/alice/memory/k", json={"value": "v" * 40}), 413, "value_too_large"
    )
    for key in ("a", "b"):
        assert (await http.put(f"/v1/users/alice/memory/{key}", json={"value": 1})).status_code == 200
    body = assert_problem(
        await http.put("/v1/users/alice/memory/c", json={"value": 1}), 413, "too_many_memory_keys"
    )
    assert body["limit"] == 2


@pytest.fixture
async def no_projector(key_prefix: str, request: pytest.FixtureRequest) -> AsyncIterator[Application]:
    app, log = await make_application("embedded", key_prefix, request, projector=False, read_timeout_s=0.05)
    yield app
    await close_application(app, log, "embedded")


async def test_a_read_the_projection_cannot_serve_in_time_is_503_never_stale(
    no_projector: Application,
) -> None:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(no_projector)), base_url="http://t"
    ) as http:
        r = await http.post("/v1/sessions", json={"user_id": "alice", "session_id": "s1"})
        # issue 15 item 4: the create answers from the log (it waited for the read model, and answered 503)
        assert r.status_code == 201, r.text
        # The session was appended, but nothing projects it: the read refuses rather than answer stale.
        r = await http.get("/v1/sessions/s1")
        body = assert_problem(r, 503, "read_model_behind")
        assert r.headers["retry-after"] == "1" and body["partitions"]
        assert_problem(await http.get("/v1/sessions/s1/messages"), 503, "read_model_behind")
        assert_problem(await http.get("/v1/users/alice/sessions"), 503, "read_model_behind")
        assert "sessions_read_model_behind_total 3.0" in (await http.get("/metrics")).text
        # Reads of what the log never had do not wait.
        assert_problem(await http.get("/v1/sessions/other"), 404, "session_not_found")


@pytest.fixture
async def real_app(key_prefix: str, request: pytest.FixtureRequest) -> AsyncIterator[Application]:
    app, log = await make_application("real", key_prefix, request)
    yield app
    await close_application(app, log, "real")


async def test_readiness_fails_while_a_migration_is_missing(real_app: Application) -> None:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(real_app)), base_url="http://t"
    ) as http:
        assert (await http.get("/readyz")).status_code == 200
        pool, schema = real_app.read_model.pool, real_app.read_model.schema  # type: ignore[attr-defined]
        async with pool.connection() as conn:
            await conn.execute(f'DELETE FROM "{schema}".schema_migrations WHERE version = 1')
        r = await http.get("/readyz")
        assert_problem(r, 503, "migrations_pending")
        assert r.headers["retry-after"] == "1"


async def test_an_unreachable_read_model_is_503_and_a_bug_is_a_500_without_a_trace(
    real_app: Application, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(real_app)), base_url="http://t"
    ) as http:
        assert (await http.post("/v1/sessions", json={"user_id": "u", "session_id": "s"})).status_code == 201

        async def broken(*args: object, **kwargs: object) -> None:
            raise RuntimeError("secret internals")

        monkeypatch.setattr(real_app.read_model, "get_session", broken)
        r = await http.get("/v1/sessions/s")
        body = assert_problem(r, 500, "internal_error")
        assert "secret" not in r.text and "reference" in body["detail"]
        monkeypatch.undo()

        await real_app.close()  # stops the projector
        await real_app.read_model.close()  # type: ignore[attr-defined]
        r = await http.get("/v1/sessions/s")
        assert_problem(r, 503, "read_model_unavailable")
        assert r.headers["retry-after"] == "1"


@pytest.fixture
async def redis_down(key_prefix: str) -> AsyncIterator[httpx.AsyncClient]:
    """The log's Redis is unreachable (a loopback port nothing listens on)."""
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    from events import EventLog
    from projections.memory import InMemoryReadModel
    from service.settings import ServiceSettings

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # No retries: redis-py's default backoff would only make the refusals slow.
    client = aioredis.Redis(
        host="127.0.0.1", port=port, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)
    )
    settings = LogSettings(prefix=key_prefix, partitions=4)
    app = Application(EventLog(client, settings), InMemoryReadModel(), settings=ServiceSettings(log=settings))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(app)), base_url="http://t"
    ) as http:
        yield http
    await client.aclose()


async def test_an_unreachable_log_is_503_on_every_path(redis_down: httpx.AsyncClient) -> None:
    http = redis_down
    msg = {"messages": [{"role": "user", "content": "x"}]}
    for r in (
        await http.post("/v1/sessions", json={"user_id": "u"}),
        await http.post("/v1/sessions/s/messages", json=msg),
        await http.get("/v1/sessions/s"),
        await http.get("/v1/sessions/s/messages"),
        await http.get("/v1/users/u/sessions"),
        await http.get("/v1/users/u/memory"),
        await http.put("/v1/users/u/memory/k", json={"value": 1}),
        await http.delete("/v1/users/u/memory"),
        await http.get("/v1/events"),
    ):
        body = assert_problem(r, 503, "unavailable")
        assert r.headers["retry-after"] == "1" and "Redis" in body["detail"]
    assert_problem(await http.get("/readyz"), 503, "log_unreachable")
    assert (await http.get("/healthz")).status_code == 200


async def test_a_publish_mixing_a_known_event_id_with_new_ones_is_409_and_names_them(
    http: httpx.AsyncClient,
) -> None:
    ids = [str(uuid.uuid4()) for _ in range(3)]
    created = {
        "id": ids[0],
        "type": "session.created.v1",
        "aggregate_kind": "session",
        "aggregate_id": "idem-1",
        "payload": {"user_id": "u"},
    }

    def said(event_id: str, text: str) -> dict[str, object]:
        return {
            "id": event_id,
            "type": "session.messages_added.v1",
            "aggregate_kind": "session",
            "aggregate_id": "idem-1",
            "payload": {"messages": [{"role": "user", "content": text}]},
        }

    first = await http.post("/v1/events", json={"events": [created, said(ids[1], "one")]})
    assert first.status_code == 200, first.text
    retry = await http.post("/v1/events", json={"events": [created, said(ids[1], "one")]})
    assert retry.status_code == 200 and retry.json()["results"][0]["duplicate"] is True
    mixed = await http.post(
        "/v1/events", json={"events": [created, said(ids[1], "one"), said(ids[2], "two")]}
    )
    body = assert_problem(mixed, 409, "event_id_reused")
    assert body["event_ids"] == ids[:2] and body["new_event_ids"] == [ids[2]]
    messages = (await http.get("/v1/sessions/idem-1/messages")).json()["messages"]
    assert [m["content"] for m in messages] == ["one"]  # nothing of the refused batch

"""Generated over every HTTP route (enumerated from the Litestar app, so a new endpoint cannot be forgotten)
and every gRPC method (enumerated from the service descriptor): no key, a malformed key, a wrong secret, an
unknown id, a revoked key, a reader on a write, a non-admin on admin-only, another tenant's admin key."""

from __future__ import annotations

import uuid
from typing import Any

import grpc
import pytest
from litestar.routes import HTTPRoute

from proto import sessions_pb2 as pb
from tests.security.conftest import Stack, wrong_secret
from tests.security.helpers import leaks, seed

# The role each handler needs; a handler missing here fails test_every_route_is_classified.
ROLE = {
    "create_session": "writer",
    "get_session": "reader",
    "delete_session": "writer",
    "list_sessions": "reader",
    "add_messages": "writer",
    "get_messages": "reader",
    "save_memory": "writer",
    "get_memory": "reader",
    "delete_memory": "writer",
    "clear_memory": "writer",
    "publish_events": "admin",
    "audit_events": "admin",  # without user_id/session_id: across users
    "session_events": "reader",
    "metrics": "admin",
    "forget_user": "admin",
    "healthz": None,
    "readyz": None,
    "openapi_json": None,
}
RANK = {"reader": 0, "writer": 1, "admin": 2}


def routes(app: Any) -> list[tuple[str, str, str]]:
    """(method, path template, handler name) of every HTTP route of the app."""
    out = []
    for route in app.routes:
        if isinstance(route, HTTPRoute):
            for handler in route.route_handlers:
                for method in sorted(handler.http_methods):
                    if method not in ("HEAD", "OPTIONS"):
                        out.append((method, route.path, handler.handler_name))
    return out


def public(path: str, name: str) -> bool:
    return path.startswith("/schema") or ROLE.get(name, "?") is None


def fill(path: str, session_id: str = "s1", user_id: str = "u1") -> str:
    return (
        path.replace("{session_id:str}", session_id)
        .replace("{user_id:str}", user_id)
        .replace("{key:path}", "topic")
    )


def body(name: str, tenant: str, session_id: str = "s1", user_id: str = "u1") -> dict[str, Any] | None:
    return {
        "create_session": {"user_id": user_id, "session_id": session_id},
        "add_messages": {"messages": [{"role": "user", "content": "hello"}]},
        "save_memory": {"value": "v"},
        "publish_events": {
            "events": [
                {
                    "type": "memory.saved.v1",
                    "tenant": tenant,
                    "aggregate_kind": "memory",
                    "aggregate_id": user_id,
                    "payload": {"user_id": user_id, "key": "published", "value": 1},
                }
            ]
        },
    }.get(name)


def code_of(response: Any) -> str:
    return str(response.json().get("code"))


async def test_every_route_is_classified(stack: Stack) -> None:
    found = {name for _, path, name in routes(stack.app) if not path.startswith("/schema")}
    assert found == set(ROLE), "classify new handlers in ROLE (and in service.http.guard)"


async def test_every_route_refuses_a_missing_wrong_or_revoked_key(stack: Stack) -> None:
    all_routes = routes(stack.app)
    assert len(all_routes) >= len(ROLE)
    valid = stack.keys["alpha_admin"]
    cases = {
        None: "missing_api_key",
        "": "missing_api_key",
        "garbage": "invalid_api_key",
        "Basic dXNlcjpwYXNz": "invalid_api_key",
        f"Bearer {wrong_secret(valid)}": "invalid_api_key",
        f"Bearer sk_{'0' * 12}_{'x' * 43}": "invalid_api_key",  # unknown id
        f"Bearer {stack.keys['alpha_revoked']}": "revoked_api_key",
        valid: "invalid_api_key",  # the key without "Bearer"
    }
    failures = []
    for method, path, name in all_routes:
        for header, code in cases.items():
            headers = {} if header is None else {"Authorization": header}
            r = await stack.call(None, method, fill(path), headers=headers, json=body(name, "alpha"))
            if public(path, name):
                if r.status_code in (401, 403):
                    failures.append((method, path, header, r.status_code))
            elif (
                r.status_code != 401
                or code_of(r) != code
                or "application/problem+json" not in r.headers.get("content-type", "")
            ):
                failures.append((method, path, header, r.status_code, r.text[:200]))
    assert failures == []
    r = await stack.call(None, "GET", "/v1/users/u1/sessions")
    assert r.headers["www-authenticate"].startswith("Bearer")


async def test_every_route_refuses_a_role_too_low(stack: Stack) -> None:
    await seed(stack, "alpha", messages_per_session=1)
    failures = []
    for method, path, name in routes(stack.app):
        if public(path, name):
            continue
        need = ROLE[name]
        for key in ("alpha_reader", "alpha_writer", "alpha_admin"):
            role = key.split("_")[1]
            r = await stack.call(key, method, fill(path), json=body(name, "alpha"))
            refused = r.status_code == 403 and code_of(r) == "insufficient_role"
            if refused != (RANK[role] < RANK[str(need)]):
                failures.append((key, method, path, r.status_code, r.text[:200]))
    assert failures == []
    # filtered by user or session, the audit trail is a reader's
    for params in ({"user_id": "u1"}, {"session_id": "s1"}):
        r = await stack.call("alpha_reader", "GET", "/v1/events", params=params)
        assert r.status_code == 200, r.text


async def test_another_tenants_ids_answer_like_ids_that_do_not_exist(stack: Stack) -> None:
    alpha = await seed(stack, "alpha", messages_per_session=2)
    before = (await stack.call("alpha_admin", "GET", "/v1/events")).json()["events"]
    failures = []

    async def compare(key: str, method: str, path: str, name: str, sid: str, uid: str, exact: bool) -> None:
        # an id that exists in alpha, and one that exists nowhere: the answers must not differ
        ghost_s, ghost_u = f"g{uuid.uuid4().hex[:8]}", f"g{uuid.uuid4().hex[:8]}"
        answers = []
        for s, u in ((sid, uid), (ghost_s, ghost_u)):
            r = await stack.call(key, method, fill(path, s, u), json=body(name, "alpha", s, u))
            if leaks(r, alpha.marker) or r.status_code >= 500:
                failures.append(("leak or 5xx", key, method, path, r.status_code, r.text[:300]))
            text = r.text.replace(s, "<sid>").replace(u, "<uid>") if exact else ""
            answers.append((r.status_code, code_of(r) if r.status_code >= 400 else None, text))
        if answers[0] != answers[1]:
            failures.append(("differs", key, method, path, answers))

    # reads first, while beta holds nothing: alpha's ids must read exactly like unknown ones
    for method, path, name in routes(stack.app):
        if not public(path, name) and method == "GET" and name != "metrics":
            for key in ("beta_reader", "beta_writer", "beta_admin"):
                await compare(key, method, path, name, "s1", "u1", exact=name != "audit_events")
    # then writes: alpha's session ids are unknown to beta; a write beta may make lands in beta's tenant
    for method, path, name in routes(stack.app):
        if not public(path, name) and method != "GET":
            exact = name in ("add_messages", "delete_session")
            sid, uid = ("s2", "u1") if name == "create_session" else ("s3", "u2")  # beta's s2 stays apart
            await compare("beta_admin", method, path, name, sid, uid, exact=exact)
    assert failures == []
    # nothing of alpha changed: its audit trail holds what it held
    after = (await stack.call("alpha_admin", "GET", "/v1/events")).json()["events"]
    assert [e["event_id"] for e in after] == [e["event_id"] for e in before]


async def test_a_key_of_one_tenant_cannot_name_another_tenant_or_act_as_admin(stack: Stack) -> None:
    r = await stack.call("beta_admin", "GET", "/v1/users/u1/sessions", headers={"X-Tenant-Id": "alpha"})
    assert (r.status_code, code_of(r)) == (403, "tenant_mismatch")
    r = await stack.call("beta_admin", "GET", "/v1/users/u1/sessions", headers={"X-Tenant-Id": "beta"})
    assert r.status_code == 200
    r = await stack.call(
        "beta_writer", "PUT", "/v1/users/u1/memory/k", json={"value": 1}, headers={"X-Actor": "admin:root"}
    )
    assert (r.status_code, code_of(r)) == (403, "insufficient_role")
    r = await stack.call(
        "beta_admin", "PUT", "/v1/users/u1/memory/k", json={"value": 1}, headers={"X-Actor": "admin:root"}
    )
    assert r.status_code == 200, r.text
    # raw events carry their tenant: an event of another tenant is refused, whoever publishes it
    r = await stack.call("beta_admin", "POST", "/v1/events", json=body("publish_events", "alpha"))
    assert (r.status_code, code_of(r)) == (403, "tenant_mismatch")  # issue 15 item 10: one status
    r = await stack.call("beta_admin", "POST", "/v1/events", json=body("publish_events", "beta"))
    assert r.status_code == 200, r.text


async def test_public_routes_need_no_key(stack: Stack) -> None:
    for path in ("/healthz", "/readyz", "/openapi.json"):
        r = await stack.call(None, "GET", path)
        assert r.status_code == 200, (path, r.text)
    r = await stack.call(None, "GET", "/metrics")
    assert r.status_code == 401
    assert (await stack.call("alpha_admin", "GET", "/metrics")).status_code == 200


# -- gRPC ------------------------------------------------------------------------------------------------

METHODS = [m.name for m in pb.DESCRIPTOR.services_by_name["SessionService"].methods]
GRPC_ROLE = {
    "GetOrCreateSession": "writer",
    "AddMessages": "writer",
    "GetMessages": "reader",
    "DeleteSession": "writer",
    "SaveMemory": "writer",
    "GetMemory": "reader",
    "DeleteMemory": "writer",
    "ClearUserMemory": "writer",
    "ListSessions": "reader",
    "GetEvents": "admin",  # without user_id/session_id
}


def grpc_request(method: str, session_id: str = "s1", user_id: str = "u1") -> Any:
    desc = pb.DESCRIPTOR.services_by_name["SessionService"].methods_by_name[method].input_type
    cls = getattr(pb, desc.name)
    fields = desc.fields_by_name
    kw: dict[str, Any] = {}
    if "user_id" in fields:
        kw["user_id"] = user_id
    if "session_id" in fields and method != "GetEvents":
        kw["session_id"] = session_id
    if "key" in fields:
        kw["key"] = "topic"
    if "value" in fields:
        kw["value"] = '"v"'
    if "messages" in fields:
        kw["messages"] = [pb.Message(role="user", content="hello")]
    if method == "GetEvents":
        kw.pop("user_id")
    return cls(**kw)


async def grpc_call(stack: Stack, method: str, request: Any, metadata: Any) -> tuple[Any, str | None, Any]:
    """(status code, error-code trailer, reply or error) of one call."""
    stack.requests += 1
    try:
        reply = await getattr(stack.stub, method)(request, metadata=metadata, timeout=20)
    except grpc.aio.AioRpcError as e:
        codes = [v for k, v in (e.trailing_metadata() or ()) if k == "error-code"]
        return e.code(), (codes[0] if codes else None), e
    return grpc.StatusCode.OK, None, reply


async def test_every_rpc_is_classified() -> None:
    assert set(METHODS) == set(GRPC_ROLE)


@pytest.mark.parametrize("method", METHODS)
async def test_every_rpc_refuses_missing_wrong_revoked_keys_and_low_roles(stack: Stack, method: str) -> None:
    await seed(stack, "alpha", messages_per_session=1)
    valid = stack.keys["alpha_admin"]
    cases = {
        (): "missing_api_key",
        (("authorization", "garbage"),): "invalid_api_key",
        (("authorization", f"Bearer {wrong_secret(valid)}"),): "invalid_api_key",
        (("authorization", f"Bearer {stack.keys['alpha_revoked']}"),): "revoked_api_key",
    }
    for metadata, code in cases.items():
        status, error_code, _ = await grpc_call(stack, method, grpc_request(method), metadata)
        assert (status, error_code) == (grpc.StatusCode.UNAUTHENTICATED, code), metadata
    for key in ("alpha_reader", "alpha_writer", "alpha_admin"):
        status, error_code, _ = await grpc_call(stack, method, grpc_request(method), stack.metadata(key))
        too_low = RANK[key.split("_")[1]] < RANK[GRPC_ROLE[method]]
        assert (
            status == grpc.StatusCode.PERMISSION_DENIED and error_code == "insufficient_role"
        ) == too_low, (
            key,
            status,
            error_code,
        )


@pytest.mark.parametrize("method", METHODS)
async def test_every_rpc_answers_another_tenants_ids_like_unknown_ids(stack: Stack, method: str) -> None:
    alpha = await seed(stack, "alpha", messages_per_session=2)
    for key in ("beta_reader", "beta_writer", "beta_admin"):
        answers = []
        ghost_s, ghost_u = f"g{uuid.uuid4().hex[:8]}", f"g{uuid.uuid4().hex[:8]}"
        for sid, uid in (("s1", "u1"), (ghost_s, ghost_u)):
            status, error_code, reply = await grpc_call(
                stack, method, grpc_request(method, sid, uid), stack.metadata(key)
            )
            assert not leaks(reply, alpha.marker), (key, reply)
            assert status not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), reply
            answers.append((status, error_code))
        assert answers[0] == answers[1], (key, method, answers)

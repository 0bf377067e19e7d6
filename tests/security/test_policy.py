"""The refusal cases of every HTTP route (enumerated from the Litestar app) and every gRPC method (enumerated
from the proto service descriptor), generated from the one policy table, ``service.operations``: a missing
key, a wrong key, each role below the one the operation needs, a key of another tenant. A route or method
with no declared operation fails here, and the app or server refuses to start with it."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from litestar import Litestar, get

from proto import sessions_pb2 as pb
from service.errors import ConfigurationError
from service.grpc import servicer
from service.grpc.servicer import RPC_OPERATIONS, create_grpc_server, undeclared_methods
from service.http.guard import check_declared, operation_of, undeclared_routes
from service.operations import OPERATIONS, Operation
from service.security.keys import ROLES
from tests.security.conftest import Stack, wrong_secret
from tests.security.helpers import seed
from tests.security.test_gate import body, code_of, fill, grpc_call, grpc_request

RANK = {role: i for i, role in enumerate(ROLES)}
METHODS = [m.name for m in pb.DESCRIPTOR.services_by_name["SessionService"].methods]


def http_operations(app: Any) -> list[tuple[str, str, Operation]]:
    """(method, path template, operation) of every route the policy governs (not Litestar's /schema)."""
    out = []
    for route in app.routes:
        if route.path.startswith("/schema"):
            continue
        for handler in route.route_handlers:
            op = operation_of(handler)
            assert op is not None, f"{route.path} declares no operation"
            out.extend(
                (m, route.path, op) for m in sorted(handler.http_methods) if m not in ("HEAD", "OPTIONS")
            )
    return out


def grpc_inputs(request: Any) -> dict[str, Any]:
    return {field.name: value for field, value in request.ListFields()}


def test_every_route_and_method_declares_an_operation(stack: Stack) -> None:
    assert undeclared_routes(stack.app) == []
    assert undeclared_methods() == []
    assert set(RPC_OPERATIONS) == set(METHODS)
    assert {op.name for _, _, op in http_operations(stack.app)} == set(OPERATIONS) - {"options"}


def test_a_route_without_an_operation_cannot_be_served() -> None:
    @get("/v1/sneaky", sync_to_thread=False)
    def sneaky() -> str:
        return "no role"

    with pytest.raises(ConfigurationError) as e:
        check_declared(Litestar([sneaky]))
    assert e.value.code == "undeclared_operation" and "/v1/sneaky" in e.value.message


async def test_a_method_without_an_operation_cannot_be_served(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        servicer, "RPC_OPERATIONS", {k: v for k, v in RPC_OPERATIONS.items() if k != "GetEvents"}
    )
    with pytest.raises(ConfigurationError) as e:
        create_grpc_server(stack.application, "127.0.0.1:0")
    assert e.value.code == "undeclared_operation" and "GetEvents" in e.value.message


async def test_http_refusals_follow_the_policy(stack: Stack) -> None:
    await seed(stack, "alpha", messages_per_session=1)
    valid = stack.keys["alpha_admin"]
    failures = []
    cases = 0
    for method, path, op in http_operations(stack.app):
        need = op.role_for({})  # the calls below name no user_id or session_id in the query
        url, payload = fill(path), body(op.name, "alpha")

        async def call(
            key: str | None, method: str = method, url: str = url, payload: Any = payload, **headers: str
        ) -> Any:
            return await stack.call(key, method, url, json=payload, headers=headers)

        if need is None:
            r = await call(None)
            if r.status_code in (401, 403):
                failures.append(("public refused", method, path, r.status_code))
            continue
        expected: list[tuple[str, Any, int, str | None]] = [
            ("missing key", await call(None), 401, "missing_api_key"),
            ("wrong key", await call(wrong_secret(valid)), 401, "invalid_api_key"),
            ("other tenant", await call("alpha_admin", **{"X-Tenant-Id": "beta"}), 403, "tenant_mismatch"),
        ]
        for role in ROLES:
            r = await call(f"alpha_{role}")
            if RANK[role] < RANK[need]:
                expected.append((f"{role} below {need}", r, 403, "insufficient_role"))
            elif r.status_code in (401, 403) and code_of(r) in ("insufficient_role", "missing_api_key"):
                failures.append((f"{role} admitted to {need}", method, path, r.status_code, r.text[:200]))
        for name, r, status, code in expected:
            cases += 1
            if (r.status_code, code_of(r)) != (status, code):
                failures.append((name, method, path, r.status_code, r.text[:200]))
    assert failures == []
    assert cases >= 4 * 14  # every governed route, at least four refusals each


def test_the_audit_trail_role_depends_on_its_filter() -> None:
    audit = OPERATIONS["audit_events"]
    assert audit.role_for({}) == "admin"
    assert audit.role_for({"user_id": "", "session_id": None}) == "admin"
    assert audit.role_for({"user_id": "u1"}) == "reader"
    assert audit.role_for({"session_id": "s1"}) == "reader"


@pytest.mark.parametrize("method", METHODS)
async def test_grpc_refusals_follow_the_policy(stack: Stack, method: str) -> None:
    await seed(stack, "alpha", messages_per_session=1)
    op = OPERATIONS[RPC_OPERATIONS[method]]
    request = grpc_request(method)
    need = op.role_for(grpc_inputs(request))
    assert need is not None
    valid = stack.keys["alpha_admin"]
    cases: list[tuple[str, Any, str]] = [
        ("missing key", (), "missing_api_key"),
        ("wrong key", (("authorization", f"Bearer {wrong_secret(valid)}"),), "invalid_api_key"),
        ("other tenant", (*stack.metadata("alpha_admin"), ("x-tenant-id", "beta")), "tenant_mismatch"),
    ]
    cases += [(f"{r} below {need}", stack.metadata(f"alpha_{r}"), "insufficient_role") for r in ROLES]
    for name, metadata, code in cases:
        status, error_code, reply = await grpc_call(stack, method, request, metadata)
        refused = {
            "missing_api_key": grpc.StatusCode.UNAUTHENTICATED,
            "invalid_api_key": grpc.StatusCode.UNAUTHENTICATED,
            "tenant_mismatch": grpc.StatusCode.PERMISSION_DENIED,
            "insufficient_role": grpc.StatusCode.PERMISSION_DENIED,
        }[code]
        below = name.endswith(f"below {need}") and RANK[name.split()[0]] < RANK[need]
        if code != "insufficient_role" or below:
            assert (status, error_code) == (refused, code), (name, reply)
        else:
            assert error_code not in ("insufficient_role", "missing_api_key"), (name, reply)

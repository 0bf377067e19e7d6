"""Limits: request rate per key (HTTP 429 + Retry-After, gRPC RESOURCE_EXHAUSTED), body size, the log's size
and count limits as the adapters answer them, id and key formats, page size; and nothing appended by a
refused request."""

from __future__ import annotations

from typing import Any

import grpc
import httpx
import pytest

from proto import sessions_pb2 as pb
from service.app import Application
from service.errors import BadRequest, ConfigurationError, RateLimited
from service.http.app import create_app
from service.security.gate import Gate
from service.security.keys import KeyStore
from service.security.ratelimit import RateLimit, RateLimiter, parse_rate_limit
from service.settings import ServiceSettings
from service.validation import check_id
from tests.security.conftest import Stack


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def code_of(r: httpx.Response) -> str:
    return str(r.json()["code"])


async def grpc_error(stack: Stack, method: str, request: Any, key: str) -> tuple[Any, str | None]:
    try:
        await getattr(stack.stub, method)(request, metadata=stack.metadata(key), timeout=20)
    except grpc.aio.AioRpcError as e:
        codes = [v for k, v in (e.trailing_metadata() or ()) if k == "error-code"]
        return e.code(), codes[0] if codes else None
    return grpc.StatusCode.OK, None


async def audit_count(stack: Stack) -> int:
    r = await stack.call("alpha_admin", "GET", "/v1/events", params={"limit": 1000})
    return len(r.json()["events"])


# -- rate ------------------------------------------------------------------------------------------------


def test_a_token_bucket_allows_its_burst_then_its_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(RateLimit(rate=2, burst=3), clock)
    for _ in range(3):
        limiter.take("k")
    with pytest.raises(RateLimited) as refused:
        limiter.take("k")
    assert refused.value.details["retry_after"] == 1
    limiter.take("other")  # buckets are per key
    clock.now += 0.5  # one token back at 2/s
    limiter.take("k")
    with pytest.raises(RateLimited):
        limiter.take("k")
    clock.now += 100  # refills to the burst, not beyond
    for _ in range(3):
        limiter.take("k")
    with pytest.raises(RateLimited):
        limiter.take("k")


def test_rate_limit_settings() -> None:
    assert parse_rate_limit(None) is None
    assert parse_rate_limit("0") is None
    assert parse_rate_limit("5") == RateLimit(5, 5)
    assert parse_rate_limit("0.5") == RateLimit(0.5, 1)
    assert parse_rate_limit("10/40") == RateLimit(10, 40)
    assert ServiceSettings.from_env({"SESSIONS_RATE_LIMIT": "3/6"}).rate_limit == RateLimit(3, 6)
    for bad in ("x", "5/y", "-1", "5/0"):
        with pytest.raises(ConfigurationError):
            parse_rate_limit(bad)


async def test_a_key_over_its_rate_is_refused_with_429_and_retry_after(stack: Stack) -> None:
    clock = Clock()
    stack.gate.limiter = RateLimiter(RateLimit(rate=1, burst=2), clock)
    for _ in range(2):
        assert (await stack.call("alpha_reader", "GET", "/v1/users/u1/sessions")).status_code == 200
    r = await stack.call("alpha_reader", "GET", "/v1/users/u1/sessions")
    assert (r.status_code, code_of(r), r.headers["retry-after"]) == (429, "rate_limited", "1")
    assert r.headers["content-type"].startswith("application/problem+json")
    # another key of the same tenant has its own bucket; health checks are never limited
    assert (await stack.call("alpha_writer", "GET", "/v1/users/u1/sessions")).status_code == 200
    assert (await stack.call(None, "GET", "/healthz")).status_code == 200
    # gRPC spends the same bucket
    status, code = await grpc_error(
        stack, "ListSessions", pb.ListSessionsRequest(user_id="u1"), "alpha_reader"
    )
    assert (status, code) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "rate_limited")
    clock.now += 1
    assert (await stack.call("alpha_reader", "GET", "/v1/users/u1/sessions")).status_code == 200
    # a refused write appends nothing
    before = await audit_count(stack)
    stack.gate.limiter = RateLimiter(RateLimit(rate=1, burst=1), clock)
    assert (
        await stack.call("alpha_writer", "PUT", "/v1/users/u1/memory/a", json={"value": 1})
    ).status_code == 200
    r = await stack.call("alpha_writer", "PUT", "/v1/users/u1/memory/b", json={"value": 1})
    assert r.status_code == 429
    stack.gate.limiter = None
    assert await audit_count(stack) == before + 1


async def test_with_no_keys_the_rate_is_limited_per_client(
    application_open: tuple[Application, Gate],
) -> None:
    application, gate = application_open
    gate.limiter = RateLimiter(RateLimit(rate=1, burst=1), Clock())
    transport = httpx.ASGITransport(app=create_app(application, gate=gate))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        assert (await http.get("/v1/users/u1/sessions")).status_code == 200
        r = await http.get("/v1/users/u1/sessions")
        assert (r.status_code, code_of(r)) == (429, "rate_limited")


@pytest.fixture
async def application_open(stack: Stack) -> tuple[Application, Gate]:
    return stack.application, Gate(KeyStore(None))


# -- body and the log's limits ----------------------------------------------------------------------------


async def test_a_body_over_the_limit_is_413_body_too_large(stack: Stack) -> None:
    settings = ServiceSettings(max_body_bytes=4096, log=stack.application.settings.log)
    small = Application(stack.application.log, stack.application.read_model, settings=settings)
    transport = httpx.ASGITransport(app=create_app(small, gate=stack.gate))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        auth = stack.auth("alpha_writer")
        before = await audit_count(stack)
        r = await http.put("/v1/users/u1/memory/big", json={"value": "x" * 5000}, headers=auth)
        assert (r.status_code, code_of(r)) == (413, "body_too_large")
        r = await http.put("/v1/users/u1/memory/ok", json={"value": "x" * 100}, headers=auth)
        assert r.status_code == 200, r.text
        # without a key the body is not even read: 401, not 413
        r = await http.put("/v1/users/u1/memory/big", json={"value": "x" * 5000})
        assert r.status_code == 401
    assert await audit_count(stack) == before + 1


async def test_the_logs_limits_carry_their_codes_over_http_and_grpc(stack: Stack) -> None:
    w = "alpha_writer"
    limits = stack.application.log.settings.limits
    assert (
        await stack.call(w, "POST", "/v1/sessions", json={"user_id": "u1", "session_id": "s1"})
    ).status_code == 201
    before = await audit_count(stack)
    cases = [
        (
            "POST",
            "/v1/sessions/s1/messages",
            {"messages": [{"role": "user", "content": "x" * (limits.max_content_bytes + 1)}]},
            "content_too_large",
        ),
        (
            "POST",
            "/v1/sessions/s1/messages",
            {"messages": [{"role": "user", "content": "x"}] * (limits.max_messages + 1)},
            "too_many_messages",
        ),
        ("PUT", "/v1/users/u1/memory/big", {"value": "x" * (limits.max_value_bytes + 1)}, "value_too_large"),
        ("PUT", f"/v1/users/u1/memory/{'k' * (limits.max_key_length + 1)}", {"value": 1}, None),
    ]
    for method, path, body, code in cases:
        r = await stack.call(w, method, path, json=body)
        assert r.status_code in (400, 413, 422), (path, r.status_code, r.text[:200])
        if code is not None:
            assert (r.status_code, code_of(r)) == (413, code), r.text[:200]
    assert await audit_count(stack) == before
    too_many = pb.AddMessagesRequest(
        session_id="s1", messages=[pb.Message(role="user", content="x")] * (limits.max_messages + 1)
    )
    assert await grpc_error(stack, "AddMessages", too_many, w) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "too_many_messages",
    )
    big = pb.SaveMemoryRequest(user_id="u1", key="big", value='"' + "x" * (limits.max_value_bytes + 1) + '"')
    assert await grpc_error(stack, "SaveMemory", big, w) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "value_too_large",
    )
    assert await audit_count(stack) == before


# -- ids, keys, page size ---------------------------------------------------------------------------------


async def test_malformed_ids_keys_and_page_sizes_are_refused_before_anything_is_appended(
    stack: Stack,
) -> None:
    w = "alpha_writer"
    before = await audit_count(stack)
    long_id = "u" * 257
    cases = [
        ("PUT", f"/v1/users/{long_id}/memory/k", {"value": 1}, 400, "invalid_id"),
        ("PUT", "/v1/users/u%01x/memory/k", {"value": 1}, 400, "invalid_id"),
        ("PUT", "/v1/users/u1/memory/a%00b", {"value": 1}, 400, "invalid_key"),
        ("PUT", f"/v1/users/u1/memory/{'k' * 257}", {"value": 1}, 400, "invalid_key"),
        ("PUT", "/v1/users/u1/memory/k", {"value": 1, "session_id": "s\x01"}, None, None),
        ("GET", f"/v1/sessions/{long_id}", None, 400, "invalid_id"),
        ("GET", "/v1/users/u1/memory?session_id=a%02", None, 400, "invalid_id"),
        ("GET", "/v1/events?user_id=" + long_id, None, 400, "invalid_id"),
        ("GET", "/v1/users/u1/sessions?limit=1001", None, 400, "limit_too_large"),
        ("GET", "/v1/events?user_id=u1&limit=5000", None, 400, "limit_too_large"),
        ("GET", "/v1/sessions/s1/messages?limit=1001", None, 400, "limit_too_large"),
        ("GET", "/v1/users/u1/sessions?limit=1000", None, 200, None),
    ]
    for method, path, body, status, code in cases:
        r = await stack.call(w, method, path, json=body)
        if status is None:
            assert 400 <= r.status_code < 500, (path, r.text)
            continue
        assert r.status_code == status, (path, r.status_code, r.text[:200])
        if code is not None:
            assert code_of(r) == code, (path, r.text[:200])
    assert await audit_count(stack) == before
    for method, request in (
        ("SaveMemory", pb.SaveMemoryRequest(user_id="u\x01", key="k", value="1")),
        ("SaveMemory", pb.SaveMemoryRequest(user_id="u1", key="k\x00", value="1")),
        ("GetMessages", pb.GetMessagesRequest(session_id="s/1")),
        ("ListSessions", pb.ListSessionsRequest(user_id="u1", limit=5000)),
    ):
        status, code = await grpc_error(stack, method, request, w)
        assert status == grpc.StatusCode.INVALID_ARGUMENT and code in (
            "invalid_id",
            "invalid_key",
            "limit_too_large",
        )
    assert await audit_count(stack) == before


def test_id_checks() -> None:
    assert check_id("a" * 256, "user_id") == "a" * 256
    for bad in ("", "a" * 257, "a/b", "a\nb", "a\x7fb"):
        with pytest.raises(BadRequest) as e:
            check_id(bad, "user_id")
        assert e.value.code == "invalid_id"

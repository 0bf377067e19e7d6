"""Schemathesis over ``/openapi.json``: every operation with generated input (valid and invalid), then every
operation on ids that exist (a session with messages and memory), so requests get past "not found".

Checks: no 5xx, status codes, content types, headers and bodies as documented, invalid input refused, 405 with
``Allow``; and on every error: ``application/problem+json`` with a ``code``, never a stack trace. Not checked:
``positive_data_acceptance`` (a schema-valid request may still break the log's rules: a tool message answering
no call, a deleted session) and ``use_after_free``/``ensure_resource_availability`` (a deleted session answers
410 by design, and a get-or-create may resume another user's id: 403).
"""

from __future__ import annotations

import json
import os
import re
import uuid
from typing import Any

import httpx
import hypothesis
import hypothesis.errors
import pytest
import schemathesis
from hypothesis import HealthCheck, given
from schemathesis import Case
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)
from schemathesis.generation import GenerationMode

from .health import assert_healthy


@schemathesis.check
def invalid_body_or_path_rejected(ctx: Any, response: Any, case: Case) -> bool | None:
    """``negative_data_rejection`` where a type can be sent at all: a query string or a header carries only
    strings (a generated object or a repeated scalar parameter arrives as text, first value wins)."""
    data = getattr(getattr(case.meta, "phase", None), "data", None)
    location = getattr(data, "parameter_location", None)
    if location is not None and str(getattr(location, "value", location)) in ("query", "header"):
        return None
    return negative_data_rejection(ctx, response, case)


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    invalid_body_or_path_rejected,
    unsupported_method,
]

FUZZ = hypothesis.settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "25")),  # more for a long exploratory run
    deadline=None,
    derandomize="FUZZ_EXAMPLES" not in os.environ,  # in CI the same cases every run: reproducible
    database=None,
    suppress_health_check=list(HealthCheck),
)


def assert_problem_or_success(response: Any) -> None:
    """Ours on top of schemathesis': an error is problem+json with a code, and no response leaks a trace."""
    text = response.text if isinstance(response.text, str) else ""
    assert "Traceback" not in text and 'File "' not in text, text[:500]
    assert response.status_code < 500, text[:500]
    if response.status_code >= 400:
        ctype = response.headers.get("content-type", "")
        ctype = ctype[0] if isinstance(ctype, list) else ctype
        assert ctype.startswith("application/problem+json"), (response.status_code, ctype, text[:300])
        body = json.loads(text)
        assert isinstance(body.get("code"), str) and body["code"], body


@pytest.fixture(scope="module")
def api(base_url: str) -> Any:
    return schemathesis.openapi.from_url(f"{base_url}/openapi.json")


def _labels(base: str) -> list[str]:
    doc = httpx.get(f"{base}/openapi.json").json()
    return [f"{m.upper()} {p}" for p, ops in doc["paths"].items() for m in ops]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_operation_with_generated_input(
    api: Any, base_url: str, http: httpx.Client, mode: GenerationMode
) -> None:
    operations = [op.ok() for op in api.get_all_operations()]
    assert len(operations) == len(_labels(base_url)) >= 13
    unsatisfiable: list[str] = []
    for operation in operations:

        @FUZZ
        @given(case=operation.as_strategy(generation_mode=mode))
        def run(case: Case) -> None:
            response = case.call_and_validate(checks=CHECKS)
            assert_problem_or_success(response)

        try:
            run()
        except hypothesis.errors.Unsatisfiable:
            # Nothing about this operation can be invalid (e.g. only free-form string path parameters).
            assert mode is GenerationMode.NEGATIVE, operation.label
            unsatisfiable.append(operation.label)
    assert len(unsatisfiable) < len(operations) // 2, unsatisfiable
    assert_healthy(http)


def _live_resources(http: httpx.Client) -> dict[str, str]:
    """A user with a session (messages, a pending tool call) and memory in both scopes."""
    user = f"live-{uuid.uuid4().hex[:8]}"
    sid = http.post("/v1/sessions", json={"user_id": user}).json()["session_id"]
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "tool_calls": [call]}]
    assert http.post(f"/v1/sessions/{sid}/messages", json={"messages": messages}).status_code == 201
    assert http.put(f"/v1/users/{user}/memory/k1", json={"value": 1}).status_code == 200
    assert http.put(f"/v1/users/{user}/memory/k1", json={"value": 2, "session_id": sid}).status_code == 200
    return {"user_id": user, "session_id": sid, "key": "k1"}


def test_every_operation_on_live_resources(api: Any, http: httpx.Client) -> None:
    """The stateful part: generated requests on ids that exist (a session with messages and memory), so the
    deeper rules run, not only "no such session". Deletes go last. (Not schemathesis' own state machine: its
    links draw from earlier responses, which hypothesis reports as flaky data generation.)"""
    live = _live_resources(http)
    operations = sorted((op.ok() for op in api.get_all_operations()), key=lambda op: op.method == "delete")
    covered = 0
    for operation in operations:
        names = re.findall(r"{(\w+)}", operation.path)
        if not names:
            continue
        covered += 1

        @FUZZ
        @given(case=operation.as_strategy(path_parameters={n: live[n] for n in names}))
        def run(case: Case) -> None:
            response = case.call_and_validate(checks=CHECKS)
            assert_problem_or_success(response)

        run()
    assert covered >= 10
    assert_healthy(http)


def test_json_nested_too_deeply_is_a_400(http: httpx.Client) -> None:
    """Found while fuzzing gRPC: msgspec answers deep nesting with RecursionError, which was a 500."""
    deep = "[" * 5000 + "]" * 5000
    for method, path, body in [
        ("POST", "/v1/sessions", f'{{"user_id": "u", "metadata": {{"a": {deep}}}}}'),
        ("PUT", "/v1/users/u/memory/k", f'{{"value": {deep}}}'),
        ("POST", "/v1/events", f'{{"events": [{{"payload": {deep}}}]}}'),
    ]:
        response = http.request(method, path, content=body, headers={"content-type": "application/json"})
        assert_problem_or_success(response)
        assert response.status_code == 400 and response.json()["code"] == "json_too_deep", response.text
    assert_healthy(http)


def test_nul_characters_are_refused_not_dead_lettered(http: httpx.Client) -> None:
    """Found by the stateful run: a NUL in session metadata was appended, then dead-lettered by the projector
    (PostgreSQL text cannot hold it), and the session answered 404 forever. The log refuses it now."""
    user = "nul-user"
    sid = http.post("/v1/sessions", json={"user_id": user}).json()["session_id"]
    refused = [
        http.post("/v1/sessions", json={"user_id": user, "metadata": {"a": "x\x00y"}}),
        http.post("/v1/sessions", json={"user_id": user, "metadata": {"k\x00": 1}}),
        http.post(f"/v1/sessions/{sid}/messages", json={"messages": [{"role": "user", "content": "a\x00"}]}),
        http.put(f"/v1/users/{user}/memory/k", json={"value": {"deep": ["\x00"]}}),
    ]
    for response in refused:
        assert_problem_or_success(response)
        assert response.status_code == 422 and response.json()["code"] == "nul_character", response.text
    # Reads with NUL in a parameter or header: a refusal or an empty answer, never a driver's error.
    nul = "a\x00b"
    for path, params, headers in [
        (f"/v1/users/{user}/sessions", {"after": nul}, {}),
        (f"/v1/sessions/{sid}/messages", {"after": nul}, {}),
        (f"/v1/sessions/{sid}/messages", {"before": nul}, {}),
        (f"/v1/users/{user}/memory", {"key": nul}, {}),
        (f"/v1/users/{user}/memory", {"session_id": nul}, {}),
        ("/v1/events", {"type": nul, "actor_id": nul, "actor_kind": nul, "user_id": nul}, {}),
        ("/v1/events", {"session_id": nul}, {}),
        (f"/v1/sessions/{sid}/events", {"type": nul, "after": nul}, {}),
        (f"/v1/sessions/{sid}", {}, {"x-actor": "user:a\x01b", "x-correlation-id": "c\x01"}),
        (f"/v1/sessions/{sid}", {"min_position": nul}, {}),
    ]:
        assert_problem_or_success(http.get(path, params=params, headers=headers))
    # An escaped backslash before "u0000" is no NUL: accepted, and read back as written.
    saved = http.put(f"/v1/users/{user}/memory/k", json={"value": "\\u0000"})
    assert saved.status_code == 200, saved.text
    assert http.get(f"/v1/users/{user}/memory").json()["memories"] == {"k": "\\u0000"}
    assert_healthy(http)


def test_a_timestamp_past_int64_is_refused(http: httpx.Client) -> None:
    """Found by the live-resources run on PostgreSQL: a message timestamp of 2^63 or more was appended, and
    the projector's COPY into a bigint failed, which stopped the in-process projector: every read then
    waited its bound and answered 503."""
    sid = http.post("/v1/sessions", json={"user_id": "ts-user"}).json()["session_id"]
    for ts in (2**63, 2**64 - 1, -(2**63) - 1, 2**53):
        body = {"messages": [{"role": "user", "content": "x", "timestamp": ts}]}
        response = http.post(f"/v1/sessions/{sid}/messages", json=body)
        assert_problem_or_success(response)
        assert response.status_code in (400, 422), response.text
    ok = {"messages": [{"role": "user", "content": "x", "timestamp": 2**53 - 1}]}
    assert http.post(f"/v1/sessions/{sid}/messages", json=ok).status_code == 201
    assert_healthy(http)

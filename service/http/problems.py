"""Errors as ``application/problem+json`` (RFC 9457) with a stable ``code``: the Litestar exception handlers,
and the problem responses the OpenAPI document lists. Never a stack trace, never a 500 for bad input."""

from __future__ import annotations

import logging
import uuid
from http import HTTPStatus
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi import ResponseSpec
from litestar.types import ExceptionHandlersMap

from events.errors import SessionsError
from service.errors import status_of
from service.http.shapes import Problem
from service.validation import invalid_id

__all__ = ["PROBLEM_JSON", "ProblemDoc", "error_responses", "exception_handlers", "problem"]

log = logging.getLogger("service.http")

PROBLEM_JSON = "application/problem+json"


class ProblemDoc(msgspec.Struct, frozen=True, kw_only=True):
    """An error (RFC 9457 problem details). ``code`` is stable; other fields carry the error's details."""

    type: str
    title: str
    status: int
    code: str
    detail: str


_ERROR_TEXT = {
    400: "bad request: malformed body, parameter, cursor or position",
    401: "missing_api_key, invalid_api_key or revoked_api_key",
    403: "the session belongs to another user",
    404: "no such session",
    409: "expected_version did not match (current_version given), or idempotency_key_reused",
    410: "the session was deleted",
    429: "rate_limited: retry after Retry-After",
    413: "a size or count limit",
    422: "the log's rules refused the events (e.g. unknown_tool_call)",
    503: "retry after Retry-After: read_model_behind, or a server unreachable",
}


def error_responses(*statuses: int) -> dict[int, ResponseSpec]:
    return {
        s: ResponseSpec(
            ProblemDoc, description=_ERROR_TEXT[s], media_type=PROBLEM_JSON, generate_examples=False
        )
        for s in (400, 401, 403, *statuses, 429, 503)
    }


def problem(
    status: int, code: str, detail: str, extra: dict[str, Any] | None = None, **headers: str
) -> Response[Any]:
    body = Problem(
        type=f"urn:sessions:problem:{code}",
        title=HTTPStatus(status).phrase,
        status=status,
        code=code,
        detail=detail,
        extra=extra or {},
    ).to_body()
    return Response(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _jsonable(details: dict[str, Any]) -> dict[str, Any]:
    try:
        return msgspec.json.decode(msgspec.json.encode(details))  # type: ignore[no-any-return]
    except (TypeError, msgspec.EncodeError):
        return {}


def _on_sessions_error(request: Request[Any, Any, Any], exc: SessionsError) -> Response[Any]:
    status = status_of(exc)
    headers = {}
    if status in (429, 503):
        headers["Retry-After"] = str(int(exc.details.get("retry_after", 1)))
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="sessions"'  # RFC 6750: the scheme a client must use
    if status == 500:
        log.error("configuration error on %s %s: %s", request.method, request.url.path, exc.message)
    return problem(status, exc.code, exc.message, _jsonable(exc.details), **headers)


# Fields of a request body that hold a session or user id: refused as ``invalid_id``, as the same id is in a
# path, a query or a gRPC message (``service.validation.check_id``), not as a generic ``invalid_request``.
_ID_FIELDS = frozenset({"user_id", "session_id"})


def _bad_id(item: dict[str, Any]) -> bool:
    """A body's id that is a string but not a valid id (too short, too long, a '/'); a number is another
    mistake (``invalid_request``)."""
    message = str(item.get("message", ""))
    return (
        item.get("key") in _ID_FIELDS
        and item.get("source") == "body"
        and message.startswith("Expected `str` ")
        and "got" not in message
    )


def _on_validation(request: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    items = [item for item in (exc.extra if isinstance(exc.extra, list) else []) if isinstance(item, dict)]
    if any(item.get("key") == "data" and item.get("message") == "'data'" for item in items):
        # Litestar's way of saying the body is absent (its message is the bare name of the parameter).
        return problem(400, "missing_body", "this request needs a JSON body; none was sent")
    if items and all(_bad_id(item) for item in items):
        error = invalid_id(str(items[0]["key"]))
        return problem(status_of(error), error.code, error.message, _jsonable(error.details))
    messages = []
    for item in items:
        where = item.get("key") or item.get("source") or ""
        messages.append(f"{where}: {item.get('message', '')}".strip(": "))
    detail = "; ".join(m for m in messages if m) or str(exc.detail)
    return problem(400, "invalid_request", detail, {"errors": _jsonable({"e": exc.extra}).get("e") or []})


_HTTP_CODES = {
    404: "route_not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
}


def _on_http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    status = exc.status_code
    code = _HTTP_CODES.get(status, "invalid_request" if 400 <= status < 500 else "internal_error")
    # Keep the exception's headers: a 405 must say which methods the path allows (RFC 9110 ``Allow``).
    response = problem(status, code, str(exc.detail))
    response.headers.update(exc.headers or {})
    return response


def _on_too_deep(request: Request[Any, Any, Any], exc: RecursionError) -> Response[Any]:
    # msgspec raises RecursionError, not a DecodeError, for JSON nested deeper than the interpreter's stack:
    # the body's fault, found while decoding it, before the handler runs.
    return problem(400, "json_too_deep", "the request's JSON is nested too deeply")


def _on_internal(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    ref = uuid.uuid4().hex[:12]
    log.exception("internal error %s on %s %s", ref, request.method, request.url.path)
    return problem(500, "internal_error", f"an internal error occurred (reference {ref}); it was logged")


def exception_handlers() -> ExceptionHandlersMap:
    return {
        SessionsError: _on_sessions_error,
        ValidationException: _on_validation,
        HTTPException: _on_http,
        RecursionError: _on_too_deep,
        Exception: _on_internal,
    }

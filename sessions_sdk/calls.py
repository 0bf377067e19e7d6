"""The API's requests as plain values: one function per operation builds a ``Call`` (method, path, query,
body, headers, and how to decode the reply). No I/O here: ``SessionsClient`` and ``AsyncSessionsClient`` only
send the calls built here, so both behave alike."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar
from urllib.parse import quote

import msgspec

from events.schema import Event, Message
from service.http.shapes import (
    AppendReply,
    AuditReply,
    ClearReply,
    MemoriesReply,
    MemoryDeleteReply,
    MemorySaveReply,
    MessagesReply,
    PublishReply,
    SessionDeleteReply,
    SessionReply,
    SessionsReply,
)

__all__ = ["Call", "Calls"]

T = TypeVar("T")


def _decoder(cls: type[T]) -> Callable[[bytes], T]:
    dec = msgspec.json.Decoder(cls)
    return dec.decode


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request, and how to read its reply."""

    method: str
    path: str
    decode: Callable[[bytes], T]
    params: dict[str, Any] = field(default_factory=dict)
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    read: bool = False  # send the client's positions: wait for its writes


def _p(segment: str) -> str:
    return quote(segment, safe="")


def _params(**kw: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in kw.items():
        if v is None:
            continue
        if isinstance(v, bool):
            out[k] = "true" if v else "false"
        elif isinstance(v, datetime):
            out[k] = v.isoformat()
        else:
            out[k] = v
    return out


def _builtins(value: Any) -> Any:
    return msgspec.to_builtins(value)


_session = _decoder(SessionReply)


class Calls:
    """The API's requests, one function each (no I/O)."""

    @staticmethod
    def create_session(
        user_id: str, session_id: str | None, metadata: Mapping[str, Any] | None
    ) -> Call[SessionReply]:
        body: dict[str, Any] = {"user_id": user_id, "metadata": dict(metadata or {})}
        if session_id is not None:
            body["session_id"] = session_id
        return Call("POST", "/v1/sessions", _session, body=body)

    @staticmethod
    def get_session(session_id: str) -> Call[SessionReply]:
        return Call("GET", f"/v1/sessions/{_p(session_id)}", _session, read=True)

    @staticmethod
    def delete_session(session_id: str) -> Call[SessionDeleteReply]:
        return Call("DELETE", f"/v1/sessions/{_p(session_id)}", _decoder(SessionDeleteReply))

    @staticmethod
    def list_sessions(user_id: str, limit: int | None, after: str | None) -> Call[SessionsReply]:
        return Call(
            "GET",
            f"/v1/users/{_p(user_id)}/sessions",
            _decoder(SessionsReply),
            _params(limit=limit, after=after),
            read=True,
        )

    @staticmethod
    def add_messages(
        session_id: str,
        messages: Sequence[Message | Mapping[str, Any]],
        expected_version: int | None,
        idempotency_key: str | None,
    ) -> Call[AppendReply]:
        body: dict[str, Any] = {"messages": [_builtins(m) for m in messages]}
        if expected_version is not None:
            body["expected_version"] = expected_version
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key is not None else {}
        return Call(
            "POST",
            f"/v1/sessions/{_p(session_id)}/messages",
            _decoder(AppendReply),
            body=body,
            headers=headers,
        )

    @staticmethod
    def get_messages(
        session_id: str,
        limit: int | None,
        offset: int | None,
        order: Literal["asc", "desc"],
        after: str | None,
        before: str | None,
        strategy: str | None = None,
        budget: int | None = None,
    ) -> Call[MessagesReply]:
        params = _params(
            limit=limit,
            offset=offset,
            order=order,
            after=after,
            before=before,
            strategy=strategy,
            budget=budget,
        )
        return Call(
            "GET", f"/v1/sessions/{_p(session_id)}/messages", _decoder(MessagesReply), params, read=True
        )

    @staticmethod
    def save_memory(user_id: str, key: str, value: Any, session_id: str | None) -> Call[MemorySaveReply]:
        body: dict[str, Any] = {"value": _builtins(value)}
        if session_id is not None:
            body["session_id"] = session_id
        return Call("PUT", f"/v1/users/{_p(user_id)}/memory/{_p(key)}", _decoder(MemorySaveReply), body=body)

    @staticmethod
    def get_memory(
        user_id: str, session_id: str | None, merged: bool, key: str | None
    ) -> Call[dict[str, Any]]:
        dec = _decoder(MemoriesReply)
        params = _params(session_id=session_id, merged=merged or None, key=key)
        return Call("GET", f"/v1/users/{_p(user_id)}/memory", lambda b: dec(b).memories, params, read=True)

    @staticmethod
    def delete_memory(user_id: str, key: str, session_id: str | None) -> Call[bool]:
        dec = _decoder(MemoryDeleteReply)
        return Call(
            "DELETE",
            f"/v1/users/{_p(user_id)}/memory/{_p(key)}",
            lambda b: dec(b).deleted,
            _params(session_id=session_id),
        )

    @staticmethod
    def clear_memory(user_id: str) -> Call[int]:
        dec = _decoder(ClearReply)
        return Call("DELETE", f"/v1/users/{_p(user_id)}/memory", lambda b: dec(b).count)

    @staticmethod
    def publish(events: Sequence[Event | Mapping[str, Any]]) -> Call[PublishReply]:
        return Call(
            "POST", "/v1/events", _decoder(PublishReply), body={"events": [_builtins(e) for e in events]}
        )

    @staticmethod
    def events(session_id: str | None, filters: dict[str, Any]) -> Call[AuditReply]:
        types = filters.pop("types", None)
        params = _params(**filters)
        if types:
            params["type"] = list(types)
        path = "/v1/events" if session_id is None else f"/v1/sessions/{_p(session_id)}/events"
        return Call("GET", path, _decoder(AuditReply), params, read=True)

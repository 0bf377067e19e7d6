"""Python SDK of the Sessions HTTP API: ``SessionsClient`` (blocking) and ``AsyncSessionsClient`` (asyncio),
both over httpx, with the same methods and typed results (the msgspec Structs of ``service.http.shapes``).

Read-your-writes is built in: the client remembers the latest position of every partition it wrote to (the
``X-Session-Position`` of each write) and sends them with every read, so a read made after a write through
the same client sees it, whichever server or aggregate it reads. Errors are raised as the service's own
exception classes (``service.errors``), carrying the API's stable ``code`` and details::

    from service.sdk import SessionsClient
    with SessionsClient("http://127.0.0.1:8052") as client:
        s = client.create_session("alice")
        client.add_messages(s.session_id, [{"role": "user", "content": "hi"}])
        page = client.get_messages(s.session_id, limit=20, order="desc")

The request building is plain functions (``Call``); the two clients only send them, so both behave alike.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar
from urllib.parse import quote

import httpx
import msgspec

from events.errors import SessionsError, Unavailable
from events.schema import Event, Message
from projections.api import MessageRecord
from service.consistency import Positions, format_positions, merge_positions, parse_positions
from service.errors import error_class_for_code
from service.http.shapes import (
    POSITION_HEADER,
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

__all__ = ["DEFAULT_URL", "AsyncSessionsClient", "Call", "SessionsClient", "raise_for_problem"]

DEFAULT_URL = "http://127.0.0.1:8052"
T = TypeVar("T")
_PROBLEM_KEYS = {"type", "title", "status", "code", "detail"}


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


class _Calls:
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


def raise_for_problem(response: httpx.Response) -> None:
    """Raise the service's exception for an error reply (problem+json), or a generic one for anything else."""
    if response.status_code < 400:
        return
    status = response.status_code
    try:
        body = msgspec.json.decode(response.content)
    except msgspec.DecodeError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("code"), str):
        code = body["code"]
        extras = {k: v for k, v in body.items() if k not in _PROBLEM_KEYS}
        cls = error_class_for_code(status, code)
        raise cls(str(body.get("detail") or code), code=code, status=status, **extras)
    if status >= 500:
        raise Unavailable(f"the service answered {status}", code="http_error", status=status)
    raise SessionsError(f"the service answered {status}", code="http_error", status=status)


API_KEY_ENV = "SESSIONS_API_KEY"  # the key a client sends when none is passed


class _Base:
    def __init__(self, tenant: str | None, actor: str | None, api_key: str | None = None) -> None:
        self.positions: Positions = {}
        self._headers: dict[str, str] = {}
        if api_key := api_key or os.environ.get(API_KEY_ENV):
            self._headers["Authorization"] = f"Bearer {api_key}"
        if tenant is not None:
            self._headers["X-Tenant-Id"] = tenant
        if actor is not None:
            self._headers["X-Actor"] = actor

    def _request_headers(self, call: Call[Any]) -> dict[str, str]:
        headers = {**self._headers, **call.headers}
        if call.read and self.positions:
            headers[POSITION_HEADER] = format_positions(self.positions)
        if call.body is not None:
            headers["Content-Type"] = "application/json"
        return headers

    def _reply(self, call: Call[T], response: httpx.Response) -> T:
        raise_for_problem(response)
        merge_positions(self.positions, parse_positions(response.headers.get(POSITION_HEADER)))
        return call.decode(response.content)

    @staticmethod
    def _content(call: Call[Any]) -> bytes | None:
        return None if call.body is None else msgspec.json.encode(call.body)


class SessionsClient(_Base):
    """Blocking client. ``client``: an httpx.Client of your own (e.g. Litestar's TestClient)."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        tenant: str | None = None,
        actor: str | None = None,
        timeout: float = 10.0,
        client: httpx.Client | None = None,
        api_key: str | None = None,
    ) -> None:
        super().__init__(tenant, actor, api_key)
        self._owns = client is None
        self.http = client if client is not None else httpx.Client(base_url=base_url, timeout=timeout)

    def __enter__(self) -> SessionsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._owns:
            self.http.close()

    def send(self, call: Call[T]) -> T:
        try:
            response = self.http.request(
                call.method,
                call.path,
                params=call.params,
                content=self._content(call),
                headers=self._request_headers(call),
            )
        except httpx.TransportError as e:
            raise Unavailable(f"cannot reach the sessions service: {e}", code="connection_failed") from e
        return self._reply(call, response)

    def create_session(
        self, user_id: str, session_id: str | None = None, metadata: Mapping[str, Any] | None = None
    ) -> SessionReply:
        return self.send(_Calls.create_session(user_id, session_id, metadata))

    def get_session(self, session_id: str) -> SessionReply:
        return self.send(_Calls.get_session(session_id))

    def delete_session(self, session_id: str) -> SessionDeleteReply:
        return self.send(_Calls.delete_session(session_id))

    def list_sessions(
        self, user_id: str, *, limit: int | None = None, after: str | None = None
    ) -> SessionsReply:
        return self.send(_Calls.list_sessions(user_id, limit, after))

    def add_messages(
        self,
        session_id: str,
        messages: Sequence[Message | Mapping[str, Any]],
        *,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> AppendReply:
        return self.send(_Calls.add_messages(session_id, messages, expected_version, idempotency_key))

    def get_messages(
        self,
        session_id: str,
        *,
        limit: int | None = None,
        offset: int | None = None,
        order: Literal["asc", "desc"] = "asc",
        after: str | None = None,
        before: str | None = None,
        strategy: str | None = None,
        budget: int | None = None,
    ) -> MessagesReply:
        """A page of messages; or, with ``strategy`` (``last_n``, ``token_budget``, ``truncate``), a context
        window that never splits a tool call from its results (``limit`` or ``budget`` sizes it)."""
        call = _Calls.get_messages(session_id, limit, offset, order, after, before, strategy, budget)
        return self.send(call)

    def iter_messages(
        self, session_id: str, *, page_size: int = 100, order: Literal["asc", "desc"] = "asc"
    ) -> Iterator[MessageRecord]:
        """Every message of the session, a page at a time."""
        after = None
        while True:
            page = self.get_messages(session_id, limit=page_size, order=order, after=after)
            yield from page.messages
            if page.next_cursor is None:
                return
            after = page.next_cursor

    def save_memory(
        self, user_id: str, key: str, value: Any, *, session_id: str | None = None
    ) -> MemorySaveReply:
        return self.send(_Calls.save_memory(user_id, key, value, session_id))

    def get_memory(
        self, user_id: str, *, session_id: str | None = None, merged: bool = False, key: str | None = None
    ) -> dict[str, Any]:
        return self.send(_Calls.get_memory(user_id, session_id, merged, key))

    def delete_memory(self, user_id: str, key: str, *, session_id: str | None = None) -> bool:
        return self.send(_Calls.delete_memory(user_id, key, session_id))

    def clear_memory(self, user_id: str) -> int:
        return self.send(_Calls.clear_memory(user_id))

    def publish(self, events: Sequence[Event | Mapping[str, Any]]) -> PublishReply:
        return self.send(_Calls.publish(events))

    def events(self, **filters: Any) -> AuditReply:
        """The audit trail. Filters: types, user_id, session_id, actor_kind, actor_id, since, until, limit,
        after."""
        return self.send(_Calls.events(None, filters))

    def session_events(self, session_id: str, **filters: Any) -> AuditReply:
        return self.send(_Calls.events(session_id, filters))


class AsyncSessionsClient(_Base):
    """asyncio client. ``client``: an httpx.AsyncClient of your own (e.g. over ``httpx.ASGITransport``)."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        tenant: str | None = None,
        actor: str | None = None,
        timeout: float = 10.0,
        client: httpx.AsyncClient | None = None,
        api_key: str | None = None,
    ) -> None:
        super().__init__(tenant, actor, api_key)
        self._owns = client is None
        self.http = client if client is not None else httpx.AsyncClient(base_url=base_url, timeout=timeout)

    async def __aenter__(self) -> AsyncSessionsClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._owns:
            await self.http.aclose()

    async def send(self, call: Call[T]) -> T:
        try:
            response = await self.http.request(
                call.method,
                call.path,
                params=call.params,
                content=self._content(call),
                headers=self._request_headers(call),
            )
        except httpx.TransportError as e:
            raise Unavailable(f"cannot reach the sessions service: {e}", code="connection_failed") from e
        return self._reply(call, response)

    async def create_session(
        self, user_id: str, session_id: str | None = None, metadata: Mapping[str, Any] | None = None
    ) -> SessionReply:
        return await self.send(_Calls.create_session(user_id, session_id, metadata))

    async def get_session(self, session_id: str) -> SessionReply:
        return await self.send(_Calls.get_session(session_id))

    async def delete_session(self, session_id: str) -> SessionDeleteReply:
        return await self.send(_Calls.delete_session(session_id))

    async def list_sessions(
        self, user_id: str, *, limit: int | None = None, after: str | None = None
    ) -> SessionsReply:
        return await self.send(_Calls.list_sessions(user_id, limit, after))

    async def add_messages(
        self,
        session_id: str,
        messages: Sequence[Message | Mapping[str, Any]],
        *,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> AppendReply:
        return await self.send(_Calls.add_messages(session_id, messages, expected_version, idempotency_key))

    async def get_messages(
        self,
        session_id: str,
        *,
        limit: int | None = None,
        offset: int | None = None,
        order: Literal["asc", "desc"] = "asc",
        after: str | None = None,
        before: str | None = None,
        strategy: str | None = None,
        budget: int | None = None,
    ) -> MessagesReply:
        """A page of messages; or, with ``strategy`` (``last_n``, ``token_budget``, ``truncate``), a context
        window that never splits a tool call from its results (``limit`` or ``budget`` sizes it)."""
        call = _Calls.get_messages(session_id, limit, offset, order, after, before, strategy, budget)
        return await self.send(call)

    async def iter_messages(
        self, session_id: str, *, page_size: int = 100, order: Literal["asc", "desc"] = "asc"
    ) -> AsyncIterator[MessageRecord]:
        """Every message of the session, a page at a time."""
        after = None
        while True:
            page = await self.get_messages(session_id, limit=page_size, order=order, after=after)
            for message in page.messages:
                yield message
            if page.next_cursor is None:
                return
            after = page.next_cursor

    async def save_memory(
        self, user_id: str, key: str, value: Any, *, session_id: str | None = None
    ) -> MemorySaveReply:
        return await self.send(_Calls.save_memory(user_id, key, value, session_id))

    async def get_memory(
        self, user_id: str, *, session_id: str | None = None, merged: bool = False, key: str | None = None
    ) -> dict[str, Any]:
        return await self.send(_Calls.get_memory(user_id, session_id, merged, key))

    async def delete_memory(self, user_id: str, key: str, *, session_id: str | None = None) -> bool:
        return await self.send(_Calls.delete_memory(user_id, key, session_id))

    async def clear_memory(self, user_id: str) -> int:
        return await self.send(_Calls.clear_memory(user_id))

    async def publish(self, events: Sequence[Event | Mapping[str, Any]]) -> PublishReply:
        return await self.send(_Calls.publish(events))

    async def events(self, **filters: Any) -> AuditReply:
        return await self.send(_Calls.events(None, filters))

    async def session_events(self, session_id: str, **filters: Any) -> AuditReply:
        return await self.send(_Calls.events(session_id, filters))

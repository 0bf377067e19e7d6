"""The asyncio client: ``AsyncSessionsClient``, over ``httpx.AsyncClient``, with the methods of
``SessionsClient``, awaited. Requests are built by ``sessions_sdk.calls``; this module only sends them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Literal, TypeVar

import httpx

from events.schema import Event, Message
from projections.api import MessageRecord
from service.http.shapes import (
    AppendReply,
    AuditReply,
    MemorySaveReply,
    MessagesReply,
    PublishReply,
    SessionDeleteReply,
    SessionReply,
    SessionsReply,
)

from .base import DEFAULT_URL, BaseClient
from .calls import Call, Calls
from .errors import transport_errors

__all__ = ["AsyncSessionsClient"]

T = TypeVar("T")


class AsyncSessionsClient(BaseClient):
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
        with transport_errors():
            response = await self.http.request(
                call.method,
                call.path,
                params=call.params,
                content=self._content(call),
                headers=self._request_headers(call),
            )
        return self._reply(call, response)

    async def create_session(
        self, user_id: str, session_id: str | None = None, metadata: Mapping[str, Any] | None = None
    ) -> SessionReply:
        return await self.send(Calls.create_session(user_id, session_id, metadata))

    async def get_session(self, session_id: str) -> SessionReply:
        return await self.send(Calls.get_session(session_id))

    async def delete_session(self, session_id: str) -> SessionDeleteReply:
        return await self.send(Calls.delete_session(session_id))

    async def list_sessions(
        self, user_id: str, *, limit: int | None = None, after: str | None = None
    ) -> SessionsReply:
        return await self.send(Calls.list_sessions(user_id, limit, after))

    async def add_messages(
        self,
        session_id: str,
        messages: Sequence[Message | Mapping[str, Any]],
        *,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> AppendReply:
        return await self.send(Calls.add_messages(session_id, messages, expected_version, idempotency_key))

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
        call = Calls.get_messages(session_id, limit, offset, order, after, before, strategy, budget)
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
        return await self.send(Calls.save_memory(user_id, key, value, session_id))

    async def get_memory(
        self, user_id: str, *, session_id: str | None = None, merged: bool = False, key: str | None = None
    ) -> dict[str, Any]:
        return await self.send(Calls.get_memory(user_id, session_id, merged, key))

    async def delete_memory(self, user_id: str, key: str, *, session_id: str | None = None) -> bool:
        return await self.send(Calls.delete_memory(user_id, key, session_id))

    async def clear_memory(self, user_id: str) -> int:
        return await self.send(Calls.clear_memory(user_id))

    async def publish(self, events: Sequence[Event | Mapping[str, Any]]) -> PublishReply:
        return await self.send(Calls.publish(events))

    async def events(self, **filters: Any) -> AuditReply:
        return await self.send(Calls.events(None, filters))

    async def session_events(self, session_id: str, **filters: Any) -> AuditReply:
        return await self.send(Calls.events(session_id, filters))

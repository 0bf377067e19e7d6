"""Small event factories for tests."""

from __future__ import annotations

from typing import Any

from events import (
    FunctionCall,
    MemoryCleared,
    MemoryClearedPayload,
    MemoryDeleted,
    MemoryDeletedPayload,
    MemorySaved,
    MemorySavedPayload,
    Message,
    MessagesAdded,
    MessagesAddedPayload,
    SessionCreated,
    SessionCreatedPayload,
    SessionDeletedEvent,
    SessionDeletedPayload,
    ToolCall,
    UserForgotten,
    UserForgottenPayload,
)


def created(sid: str, user: str, tenant: str = "default", **meta: Any) -> SessionCreated:
    return SessionCreated(
        aggregate_kind="session",
        aggregate_id=sid,
        tenant=tenant,
        payload=SessionCreatedPayload(user_id=user, metadata=meta),
    )


def msg(role: str, content: str | None = None, **kw: Any) -> Message:
    return Message(role=role, content=content, timestamp=kw.pop("timestamp", 1), **kw)  # type: ignore[arg-type]


def call(call_id: str, name: str = "lookup", arguments: str = "{}") -> ToolCall:
    return ToolCall(id=call_id, function=FunctionCall(name=name, arguments=arguments))


def added(sid: str, *messages: Message, tenant: str = "default") -> MessagesAdded:
    return MessagesAdded(
        aggregate_kind="session",
        aggregate_id=sid,
        tenant=tenant,
        payload=MessagesAddedPayload(messages=list(messages)),
    )


def deleted(sid: str, tenant: str = "default", reason: str | None = None) -> SessionDeletedEvent:
    return SessionDeletedEvent(
        aggregate_kind="session",
        aggregate_id=sid,
        tenant=tenant,
        payload=SessionDeletedPayload(reason=reason),
    )


def saved(
    user: str, key: str, value: Any, session: str | None = None, tenant: str = "default"
) -> MemorySaved:
    return MemorySaved(
        aggregate_kind="session" if session else "memory",
        aggregate_id=session or user,
        tenant=tenant,
        payload=MemorySavedPayload(user_id=user, key=key, value=value, session_id=session),
    )


def mem_deleted(user: str, key: str, session: str | None = None) -> MemoryDeleted:
    return MemoryDeleted(
        aggregate_kind="session" if session else "memory",
        aggregate_id=session or user,
        payload=MemoryDeletedPayload(user_id=user, key=key, session_id=session),
    )


def cleared(user: str, session: str | None = None) -> MemoryCleared:
    return MemoryCleared(
        aggregate_kind="session" if session else "memory",
        aggregate_id=session or user,
        payload=MemoryClearedPayload(user_id=user, session_id=session),
    )


def forgotten(user: str, tenant: str = "default") -> UserForgotten:
    return UserForgotten(
        aggregate_kind="memory", aggregate_id=user, tenant=tenant, payload=UserForgottenPayload(user_id=user)
    )

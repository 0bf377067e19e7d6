"""Commands: validate, build events with their defaults, append them to the log, return where they landed.

A command answers from the log alone (what it appended, and the aggregate's state there), never by waiting
for the read model: the log's append script is the one place where the rules are checked (ownership, deleted
sessions, versions, tool calls, limits), atomically. What a command returns carries the position (partition +
stream entry id) a later read can wait for. Each command is an operation of ``service.operations``: its
inputs checked and its appends counted there, once for every adapter.

With ``data_keys`` (the service's default), what a user writes is sealed with their data key before it is
appended (``service.sealing``): message contents, tool call arguments, memory values. The session's owner,
whose key seals its messages, comes from the log's aggregate state (the owner of a session never changes)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec

from events.codec import recorded_at_of
from events.errors import NotFound, PermissionDenied, SessionsError
from events.log import AppendResult, EventLog
from events.schema import (
    AggregateKind,
    AnyEvent,
    Event,
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
    SessionDeleted,
    SessionDeletedPayload,
    new_event_id,
    now_ms,
)
from projections.api import SessionRecord
from service.errors import BadRequest
from service.idempotency import IDEMPOTENCY_NAMESPACE, Claim
from service.idempotency import event_id as idempotent_event_id
from service.keyring import DataKeys
from service.operations import Observer, command
from service.request import Context
from service.sealing import DataKey, aad, seal_text, seal_value

__all__ = ["IDEMPOTENCY_NAMESPACE", "ClearResult", "Commands", "SessionWrite", "idempotent_event_id"]

SessionLookup = Callable[[str, str, dict[int, str | None]], Awaitable[SessionRecord | None]]
"""(tenant, session id, its position) -> the read model's row, if it has one (``Application``: after a short
grace at most, never the read timeout)."""


class SessionWrite(msgspec.Struct, frozen=True, kw_only=True):
    session_id: str
    created: bool  # this request created it (also on a retry of that request with its Idempotency-Key)
    result: AppendResult
    session: SessionRecord  # the session as the log has it after the write


class ClearResult(msgspec.Struct, frozen=True, kw_only=True):
    count: int
    results: list[AppendResult]


def _with_timestamps(messages: Sequence[Message], now: int) -> list[Message]:
    return [m if m.timestamp else msgspec.structs.replace(m, timestamp=now) for m in messages]


def _memory_aggregate(user_id: str, session_id: str | None) -> tuple[AggregateKind, str]:
    return ("memory", user_id) if session_id is None else ("session", session_id)


def _seal_message(key: DataKey, associated: bytes, m: Message) -> Message:
    calls = m.tool_calls
    if calls:
        calls = [
            msgspec.structs.replace(
                c,
                function=msgspec.structs.replace(
                    c.function, arguments=seal_text(key, associated, c.function.arguments)
                ),
            )
            if c.function.arguments
            else c
            for c in calls
        ]
    content = seal_text(key, associated, m.content) if m.content is not None else None
    return msgspec.structs.replace(m, content=content, tool_calls=calls)


class Commands:
    def __init__(
        self,
        log: EventLog,
        data_keys: DataKeys | None = None,
        *,
        metrics: Observer | None = None,
        sessions: SessionLookup | None = None,
    ) -> None:
        self.log = log
        self.data_keys = data_keys  # None: append what users write in plain text
        self.metrics = metrics  # counts each command's appends and refusals (``service.operations.command``)
        self.sessions = sessions  # a resumed session's creation time and metadata, when already projected

    def _envelope(self, ctx: Context, user_id: str | None, event_id: uuid.UUID | None) -> dict[str, Any]:
        return {
            "id": event_id or new_event_id(),
            "tenant": ctx.tenant,
            "actor": ctx.actor_for(user_id),
            "correlation_id": ctx.correlation_id,
        }

    @command("create_session")
    async def get_or_create_session(
        self,
        ctx: Context,
        user_id: str,
        session_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> SessionWrite:
        """Resume the user's session ``session_id``, create it under that id, or create one with a new id.
        Another user's session id is refused (PermissionDenied); a deleted one too (SessionDeleted). With an
        ``idempotency_key`` and no ``session_id``, a retry returns the session the first try created; the same
        key with another request is refused (``idempotency_key_reused``)."""
        event_id = claim = None
        sid = session_id or str(new_event_id())
        if idempotency_key is not None:
            event_id = idempotent_event_id(ctx.tenant, "sessions", idempotency_key)
            sid = session_id or str(event_id)
            request = {"user_id": user_id, "session_id": session_id, "metadata": metadata or {}}
            claim = await Claim.take(self.log, ctx.tenant, event_id, request)
        event = SessionCreated(
            aggregate_kind="session",
            aggregate_id=sid,
            payload=SessionCreatedPayload(user_id=user_id, metadata=metadata or {}),
            **self._envelope(ctx, user_id, event_id),
        )
        result = await self._append([event], None, claim)
        created = result.appended or result.duplicate
        session = await self._session_of(ctx, sid, user_id, metadata or {}, result, created)
        return SessionWrite(session_id=sid, created=created, result=result, session=session)

    async def _session_of(
        self,
        ctx: Context,
        session_id: str,
        user_id: str,
        metadata: dict[str, Any],
        result: AppendResult,
        created: bool,
    ) -> SessionRecord:
        """The session after a get-or-create, from the log: what this request appended, or (resumed) the
        aggregate's state. A resumed session's creation time and metadata never change, so they come from the
        read model's row (``sessions``); a session the read model has not seen yet answers with the time of
        its latest event and its metadata unknown (``{}``) rather than wait."""
        at = recorded_at_of(result.position) if result.position else None
        record = SessionRecord(
            tenant=ctx.tenant,
            session_id=session_id,
            user_id=user_id,
            metadata=metadata,
            created_at=at or recorded_at_of("0-0"),
            updated_at=at or recorded_at_of("0-0"),
            message_count=result.message_count or 0,
            version=result.version,
        )
        if created or self.sessions is None:
            return record
        row = await self.sessions(ctx.tenant, session_id, {result.partition: result.position})
        if row is None or row.deleted:
            return msgspec.structs.replace(record, metadata={})
        if row.version == result.version:
            return row
        return msgspec.structs.replace(record, created_at=row.created_at, metadata=row.metadata)

    @command("add_messages")
    async def add_messages(
        self,
        ctx: Context,
        session_id: str,
        messages: Sequence[Message],
        *,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> AppendResult:
        """Append messages (timestamps default to now), recorded as the session owner's unless the context
        names an actor. A retry with the same Idempotency-Key returns the first result and appends nothing;
        the same key with other messages is refused (``idempotency_key_reused``)."""
        if not messages:
            raise BadRequest("messages must be a non-empty list", code="empty_messages")
        event_id = claim = None
        if idempotency_key is not None:
            event_id = idempotent_event_id(ctx.tenant, f"session/{session_id}/messages", idempotency_key)
            request = {"messages": messages, "expected_version": expected_version}
            claim = await Claim.take(self.log, ctx.tenant, event_id, request)
        stamped = _with_timestamps(messages, now_ms())
        key_name = None
        # else (no such session) the log refuses the append: nothing to seal, no owner to record
        owner = (await self.log.aggregate(ctx.tenant, "session", session_id)).user_id
        if self.data_keys is not None and owner is not None:
            key = await self.data_keys.for_write(ctx.tenant, owner)
            associated = aad(ctx.tenant, owner, "session", session_id)
            stamped = [_seal_message(key, associated, m) for m in stamped]
            key_name = key.name
        event = MessagesAdded(
            aggregate_kind="session",
            aggregate_id=session_id,
            payload=MessagesAddedPayload(messages=stamped),
            encryption_key_id=key_name,
            **self._envelope(ctx, owner, event_id),
        )
        return await self._append([event], expected_version, claim)

    async def _append(
        self, events: list[Event], expected_version: int | None, claim: Claim | None
    ) -> AppendResult:
        """Append; a refused append gives its Idempotency-Key back (``Claim.release``), so a corrected retry
        may use it."""
        try:
            return await self.log.append(events, expected_version)
        except SessionsError:
            if claim is not None:
                await claim.release()
            raise

    @command("delete_session")
    async def delete_session(self, ctx: Context, session_id: str, reason: str | None = None) -> AppendResult:
        event = SessionDeleted(
            aggregate_kind="session",
            aggregate_id=session_id,
            payload=SessionDeletedPayload(reason=reason),
            **self._envelope(ctx, None, None),
        )
        return await self.log.append([event])

    @command("save_memory")
    async def save_memory(
        self, ctx: Context, user_id: str, key: str, value: Any, session_id: str | None = None
    ) -> AppendResult:
        """User-scoped memory lives in the aggregate (memory, user_id); session-scoped memory in the session's
        own aggregate, so the session's rules (owner, deleted) hold atomically."""
        kind, agg = _memory_aggregate(user_id, session_id)
        key_name = None
        if self.data_keys is not None and value is not None:  # null stays null: the log refuses it
            dek = await self.data_keys.for_write(ctx.tenant, user_id)
            value = seal_value(dek, aad(ctx.tenant, user_id, kind, agg), value)
            key_name = dek.name
        event = MemorySaved(
            aggregate_kind=kind,
            aggregate_id=agg,
            payload=MemorySavedPayload(user_id=user_id, key=key, value=value, session_id=session_id),
            encryption_key_id=key_name,
            **self._envelope(ctx, user_id, None),
        )
        return await self.log.append([event])

    @command("delete_memory")
    async def delete_memory(
        self, ctx: Context, user_id: str, key: str, session_id: str | None = None
    ) -> AppendResult:
        """``removed`` is 1 when the key existed (an absent key appends nothing and removes 0)."""
        kind, agg = _memory_aggregate(user_id, session_id)
        event = MemoryDeleted(
            aggregate_kind=kind,
            aggregate_id=agg,
            payload=MemoryDeletedPayload(user_id=user_id, key=key, session_id=session_id),
            **self._envelope(ctx, user_id, None),
        )
        return await self.log.append([event])

    @command("clear_memory")
    async def clear_memory(self, ctx: Context, user_id: str) -> ClearResult:
        """Clear the user's memory in every scope: the user scope and each session scope the log lists."""
        envelope = self._envelope(ctx, user_id, None)
        del envelope["id"]
        results = [
            await self.log.append(
                [
                    MemoryCleared(
                        aggregate_kind="memory",
                        aggregate_id=user_id,
                        payload=MemoryClearedPayload(user_id=user_id),
                        **envelope,
                    )
                ]
            )
        ]
        for sid in await self.log.scoped_sessions(ctx.tenant, user_id):
            event = MemoryCleared(
                aggregate_kind="session",
                aggregate_id=sid,
                payload=MemoryClearedPayload(user_id=user_id, session_id=sid),
                **envelope,
            )
            try:
                results.append(await self.log.append([event]))
            except (NotFound, PermissionDenied):
                # A deleted session's memory went with it; a stale entry of the list is harmless.
                continue
        return ClearResult(count=sum(r.removed for r in results), results=results)

    @command("publish_events")
    async def publish(self, events: Sequence[AnyEvent | Event]) -> list[AppendResult]:
        """Append a batch from another service: one atomic append per aggregate, in the order the aggregates
        first appear. The first refused aggregate stops the batch (the error says which were appended);
        retrying the whole batch is safe, since appended event ids return their first result."""
        groups: dict[tuple[str, str, str], list[Event]] = {}
        for e in events:
            groups.setdefault((e.tenant, e.aggregate_kind, e.aggregate_id), []).append(e)
        results: list[AppendResult] = []
        for group in groups.values():
            try:
                results.append(await self.log.append(group))
            except SessionsError as e:
                e.details.update(
                    failed_aggregate={"kind": group[0].aggregate_kind, "id": group[0].aggregate_id},
                    appended=[msgspec.to_builtins(r) for r in results],
                )
                raise
        return results

"""Queries: read the read model, after waiting (bounded) until it shows what the log had when the read began.

Which position a read waits for:

* one aggregate (a session, its messages, its events; a user's memory): that aggregate's latest position in
  the log (``EventLog.aggregate``), so every write that finished before the read began is seen;
* reads across aggregates (a user's sessions, the audit trail by user or for everything): every partition's
  head (``EventLog.heads``);
* plus any positions the caller passes (``at``), e.g. from its writes to other aggregates.

What users wrote comes out opened (``service.unsealing.Unsealer``): message contents, tool call arguments,
memory values and audit payloads; erased when the user's data key is gone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, get_args

import msgspec

from events.codec import UPCASTERS
from events.errors import NotFound, PermissionDenied, SessionDeleted
from events.log import AggregateState, EventLog
from events.schema import AnyEvent
from projections.api import (
    AuditFilter,
    AuditPage,
    MemoryRecord,
    MessagePage,
    Order,
    ReadModel,
    SessionPage,
    SessionRecord,
)
from service.consistency import Consistency, Positions, merge_positions
from service.errors import BadRequest, NotCaughtUp
from service.keyring import DataKeys
from service.request import ACTOR_KINDS, Context
from service.unsealing import Unsealer
from service.validation import MAX_PAGE

__all__ = ["EVENT_TYPES", "MAX_PAGE", "Queries"]

# Every type tag the archive can hold: the current ones and those an upcaster still reads.
EVENT_TYPES: tuple[str, ...] = tuple(
    sorted({str(t.__struct_config__.tag) for t in get_args(AnyEvent)} | set(UPCASTERS))
)


def _page_limit(limit: int | None, default: int) -> int:
    if limit is None or limit == 0:
        return default
    return min(limit, MAX_PAGE)


def _no_nul(**values: str | list[str] | None) -> None:
    """PostgreSQL text cannot hold NUL: its driver refuses such a parameter (a 500), and nothing stored holds
    one (the log refuses it: nul_character). Refused here, the same on every read model."""
    for name, value in values.items():
        for v in value if isinstance(value, list) else [value]:
            if v is not None and "\x00" in v:
                raise BadRequest(f"{name} holds the NUL character (\\u0000)", code="nul_character")


def _check_audit_filter(flt: AuditFilter) -> None:
    """Refuse a filter that can match nothing because it names no known type or actor kind (a typo such as
    ``memory.saved`` for ``memory.saved.v1`` would otherwise read as an empty trail)."""
    unknown = sorted(set(flt.types or ()) - set(EVENT_TYPES))
    if unknown:
        raise BadRequest(
            f"unknown event types {unknown}; known: {', '.join(EVENT_TYPES)}",
            code="invalid_event_type",
            known=list(EVENT_TYPES),
        )
    if flt.actor_kind is not None and flt.actor_kind not in ACTOR_KINDS:
        raise BadRequest(
            f"unknown actor_kind {flt.actor_kind!r}; known: {', '.join(ACTOR_KINDS)}",
            code="invalid_actor_kind",
            known=list(ACTOR_KINDS),
        )


class Queries:
    def __init__(
        self,
        log: EventLog,
        read_model: ReadModel,
        consistency: Consistency,
        data_keys: DataKeys | None = None,
        *,
        on_behind: Callable[[], None] | None = None,
    ) -> None:
        self.log = log
        self.read_model = read_model
        self.consistency = consistency
        self.unsealer = Unsealer(data_keys or DataKeys(log.redis, log.keys, timeout_s=log.timeout_s))
        self.on_behind = on_behind  # told of each read that gave up waiting (the read_model_behind metric)

    async def _caught_up(self, target: Positions) -> None:
        try:
            await self.consistency.wait(target)
        except NotCaughtUp:
            if self.on_behind is not None:
                self.on_behind()
            raise

    def _target(self, at: Positions | None) -> Positions:
        target: Positions = dict(at or {})
        wrong = sorted(p for p in target if p >= self.log.partitions)
        if wrong:
            raise BadRequest(
                f"positions name partitions {wrong}, but the log has {self.log.partitions}",
                code="invalid_position",
            )
        return target

    async def _wait(self, at: Positions | None, *states: AggregateState) -> None:
        target = self._target(at)
        for st in states:
            merge_positions(target, {st.partition: st.position})
        await self._caught_up(target)

    async def _wait_heads(self, at: Positions | None) -> None:
        target = self._target(at)
        merge_positions(target, await self.log.heads())
        await self._caught_up(target)

    async def _session_state(self, ctx: Context, session_id: str) -> AggregateState:
        st = await self.log.aggregate(ctx.tenant, "session", session_id)
        if st.deleted:
            raise SessionDeleted(f"session {session_id} was deleted", code="session_deleted")
        return st

    async def session(self, ctx: Context, session_id: str, at: Positions | None = None) -> SessionRecord:
        _no_nul(session_id=session_id)
        st = await self._session_state(ctx, session_id)
        await self._wait(at, st)
        record = await self.read_model.get_session(ctx.tenant, session_id)
        if record is None:
            raise NotFound(f"session {session_id} does not exist", code="session_not_found")
        if record.deleted:
            raise SessionDeleted(f"session {session_id} was deleted", code="session_deleted")
        return record

    async def messages(
        self,
        ctx: Context,
        session_id: str,
        *,
        limit: int | None = None,
        offset: int | None = None,
        order: Order = "asc",
        after: str | None = None,
        before: str | None = None,
        at: Positions | None = None,
    ) -> MessagePage:
        _no_nul(session_id=session_id, after=after, before=before)
        st = await self._session_state(ctx, session_id)
        await self._wait(at, st)
        owner = st.user_id
        if not st.exists:
            # The log knows every session; ask the read model only to tell "never" from a lost log (whose
            # owner the read model still knows, so the contents still open).
            owner = (await self.session(ctx, session_id)).user_id
        page = await self.read_model.get_messages(
            ctx.tenant,
            session_id,
            limit=limit or None,
            offset=offset,
            order=order,
            after=after,
            before=before,
        )
        opened = await self.unsealer.messages(ctx.tenant, owner, session_id, page.messages)
        return page if opened is page.messages else msgspec.structs.replace(page, messages=opened)

    async def sessions_of(
        self,
        ctx: Context,
        user_id: str,
        *,
        limit: int | None = None,
        after: str | None = None,
        at: Positions | None = None,
    ) -> SessionPage:
        _no_nul(user_id=user_id, after=after)
        await self._wait_heads(at)
        return await self.read_model.list_sessions(
            ctx.tenant, user_id, limit=_page_limit(limit, 50), after=after
        )

    async def memory(
        self,
        ctx: Context,
        user_id: str,
        *,
        session_id: str | None = None,
        merged: bool = False,
        key: str | None = None,
        at: Positions | None = None,
    ) -> dict[str, MemoryRecord]:
        _no_nul(user_id=user_id, session_id=session_id, key=key)
        if merged and session_id is None:
            raise BadRequest(
                "merged needs a session_id (both scopes, the session's winning)", code="merged_needs_session"
            )
        states = (
            [await self.log.aggregate(ctx.tenant, "memory", user_id)] if session_id is None or merged else []
        )
        if session_id is not None:
            st = await self._session_state(ctx, session_id)
            if not st.exists:
                raise NotFound(f"session {session_id} does not exist", code="session_not_found")
            if st.user_id != user_id:
                raise PermissionDenied(
                    f"session {session_id} does not belong to user {user_id}", code="memory_session_not_owned"
                )
            states.append(st)
        await self._wait(at, *states)
        records = await self.read_model.get_memory(
            ctx.tenant, user_id, session_id=session_id, merged=merged, key=key
        )
        return await self.unsealer.memory(ctx.tenant, user_id, records)

    async def audit(
        self,
        ctx: Context,
        flt: AuditFilter,
        *,
        limit: int | None = None,
        after: str | None = None,
        at: Positions | None = None,
    ) -> AuditPage:
        _no_nul(
            session_id=flt.session_id,
            user_id=flt.user_id,
            type=list(flt.types or ()),
            actor_kind=flt.actor_kind,
            actor_id=flt.actor_id,
            after=after,
        )
        _check_audit_filter(flt)
        if flt.session_id is not None and flt.user_id is None:
            st = await self.log.aggregate(ctx.tenant, "session", flt.session_id)
            if not st.exists:
                raise NotFound(f"session {flt.session_id} does not exist", code="session_not_found")
            await self._wait(at, st)
        else:
            await self._wait_heads(at)
        page = await self.read_model.audit(flt, limit=_page_limit(limit, 100), after=after)
        return msgspec.structs.replace(page, events=await self.unsealer.audit(page.events))

    async def positions(self, ctx: Context, kind: str, aggregate_id: str) -> dict[str, Any]:
        st = await self.log.aggregate(ctx.tenant, kind, aggregate_id)
        return {"partition": st.partition, "position": st.position, "version": st.version}

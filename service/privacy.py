"""Privacy: opening sealed values on the way out, and forgetting a user (crypto-shredding).

Reads: the read models hold what the log holds, ciphertext included (``service.crypto``); ``Unsealer`` opens
it for the queries. A value whose key is gone reads as erased: a message's ``content`` None (a tool call's
``arguments`` ``""``) with ``metadata["erased"] = True``; a memory value None; an audit payload with
``"erased": True`` and the sealed fields None. Plain values (events published raw, or written with
encryption off) pass through.

``forget_user``: delete every live session of the user, wait until the read models applied that, destroy the
user's data key, append ``user.forgotten.v1`` (whose projection removes the user's memory and session rows)
and wait for it too. Idempotent. What it cannot reach: Redis' append-only file keeps the destroyed key until
the next rewrite (``rewrite_aof=True`` asks Redis for one), and backups taken before keep it too.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from events.errors import NotFound, SessionDeleted, Unavailable
from events.keys import partition_of
from events.log import AppendResult, EventLog
from events.schema import FORGET_REASON, UserForgotten, UserForgottenPayload, new_event_id
from projections.api import AuditRecord, MemoryRecord, MessageRecord, ReadModel

from .commands import Commands, Context
from .consistency import Consistency, Positions, merge_positions
from .crypto import DataKey, DataKeys, Erased, aad, is_sealed, open_text, open_value

__all__ = ["FORGOTTEN_REASON", "ForgetResult", "Unsealer", "forget_user"]

logger = logging.getLogger("service.privacy")

FORGOTTEN_REASON = FORGET_REASON  # the read models drop the row of a session deleted with it
WAIT_S = 30.0  # an erasure waits for the projection longer than a read does


class Unsealer:
    """Opens sealed values with the owners' data keys (one key lookup per user and call)."""

    def __init__(self, data_keys: DataKeys) -> None:
        self.data_keys = data_keys

    async def messages(
        self, tenant: str, owner: str | None, session_id: str, rows: list[MessageRecord]
    ) -> list[MessageRecord]:
        if owner is None or not any(_message_sealed(m) for m in rows):
            return rows
        key = await self.data_keys.get(tenant, owner)
        associated = aad(tenant, owner, "session", session_id)
        return [_open_message(key, associated, m) if _message_sealed(m) else m for m in rows]

    async def memory(
        self, tenant: str, user_id: str, records: dict[str, MemoryRecord]
    ) -> dict[str, MemoryRecord]:
        if not any(is_sealed(r.value) for r in records.values()):
            return records
        key = await self.data_keys.get(tenant, user_id)
        out = {}
        for name, r in records.items():
            if is_sealed(r.value):
                kind, agg = ("memory", user_id) if r.session_id is None else ("session", r.session_id)
                try:
                    value = open_value(key, aad(tenant, user_id, kind, agg), r.value)
                except Erased:
                    value = None
                r = msgspec.structs.replace(r, value=value)
            out[name] = r
        return out

    async def audit(self, records: list[AuditRecord]) -> list[AuditRecord]:
        keys: dict[tuple[str, str], DataKey | None] = {}
        out = []
        for r in records:
            if r.user_id is not None and _payload_sealed(r.type, r.payload):
                who = (r.tenant, r.user_id)
                if who not in keys:
                    keys[who] = await self.data_keys.get(*who)
                associated = aad(r.tenant, r.user_id, r.aggregate_kind, r.aggregate_id)
                r = msgspec.structs.replace(
                    r, payload=_open_payload(keys[who], associated, r.type, r.payload)
                )
            out.append(r)
        return out


def _message_sealed(m: MessageRecord | dict[str, Any]) -> bool:
    get = m.get if isinstance(m, dict) else lambda f: getattr(m, f, None)
    if is_sealed(get("content")):
        return True
    return any(is_sealed(((c or {}).get("function") or {}).get("arguments")) for c in get("tool_calls") or ())


def _open_calls(key: DataKey | None, associated: bytes, calls: Any) -> tuple[Any, bool]:
    if not calls:
        return calls, False
    erased = False
    out = []
    for c in calls:
        f = c.get("function") if isinstance(c, dict) else None
        if isinstance(f, dict) and is_sealed(f.get("arguments")):
            try:
                args = open_text(key, associated, f["arguments"])
            except Erased:
                args, erased = "", True
            c = {**c, "function": {**f, "arguments": args}}
        out.append(c)
    return out, erased


def _open_message(key: DataKey | None, associated: bytes, m: MessageRecord) -> MessageRecord:
    content, erased = m.content, False
    if content is not None and is_sealed(content):
        try:
            content = open_text(key, associated, content)
        except Erased:
            content, erased = None, True
    calls, calls_erased = _open_calls(key, associated, m.tool_calls)
    metadata = m.metadata
    if erased or calls_erased:
        metadata = {**(metadata or {}), "erased": True}
    return msgspec.structs.replace(m, content=content, tool_calls=calls, metadata=metadata)


def _payload_sealed(type_: str, payload: dict[str, Any]) -> bool:
    if type_ == "memory.saved.v1":
        return is_sealed(payload.get("value"))
    if type_ == "session.messages_added.v1":
        return any(isinstance(m, dict) and _message_sealed(m) for m in payload.get("messages") or ())
    return False


def _open_payload(
    key: DataKey | None, associated: bytes, type_: str, payload: dict[str, Any]
) -> dict[str, Any]:
    erased = False
    if type_ == "memory.saved.v1":
        try:
            value = open_value(key, associated, payload["value"])
        except Erased:
            value, erased = None, True
        out = {**payload, "value": value}
    else:
        messages = []
        for m in payload.get("messages") or ():
            if isinstance(m, dict) and _message_sealed(m):
                m = dict(m)
                if is_sealed(m.get("content")):
                    try:
                        m["content"] = open_text(key, associated, m["content"])
                    except Erased:
                        m["content"], erased = None, True
                m["tool_calls"], calls_erased = _open_calls(key, associated, m.get("tool_calls"))
                erased = erased or calls_erased
            messages.append(m)
        out = {**payload, "messages": messages}
    if erased:
        out["erased"] = True
    return out


# ---------------------------------------------------------------------------------------------------------
# Forgetting a user


class ForgetResult(msgspec.Struct, frozen=True, kw_only=True):
    user_id: str
    sessions_deleted: list[str]  # live sessions this call deleted
    key_destroyed: bool  # False: the user had no data key (never wrote sealed data, or forgotten before)
    aof_rewrite: str  # "started", "not requested", or why it failed
    result: AppendResult  # the user.forgotten event's append


async def _sessions_of(log: EventLog, read_model: ReadModel, tenant: str, user_id: str) -> list[str]:
    page = await read_model.list_sessions(tenant, user_id, limit=0)
    found = [s.session_id for s in page.sessions]
    try:
        found += await log.scoped_sessions(tenant, user_id)
    except (RedisConnectionError, RedisTimeoutError, OSError) as e:
        raise Unavailable(f"cannot reach Redis: {e}") from e
    return list(dict.fromkeys(found))


async def forget_user(
    log: EventLog,
    read_model: ReadModel,
    consistency: Consistency,
    commands: Commands,
    data_keys: DataKeys,
    ctx: Context,
    user_id: str,
    *,
    rewrite_aof: bool = False,
) -> ForgetResult:
    """Erase ``user_id`` of ``ctx.tenant`` (see the module docstring). Sessions the user creates while this
    runs may survive it: stop the user's traffic first, or run it again."""
    tenant = ctx.tenant
    # 1. Every live session: from the read model once it shows the whole log, and the log's scoped set.
    try:
        heads = await log.heads()
    except (RedisConnectionError, RedisTimeoutError, OSError) as e:
        raise Unavailable(f"cannot reach Redis: {e}") from e
    await consistency.wait(heads, WAIT_S)
    deleted: list[str] = []
    target: Positions = {}
    for sid in await _sessions_of(log, read_model, tenant, user_id):
        state = await log.aggregate(tenant, "session", sid)
        if not state.exists or state.deleted or state.user_id != user_id:
            continue  # a stale entry of the scoped set, or deleted meanwhile
        try:
            r = await commands.delete_session(ctx, sid, reason=FORGOTTEN_REASON)
        except (NotFound, SessionDeleted):
            continue
        deleted.append(sid)
        merge_positions(target, {r.partition: r.position})
    # 2. The read models have dropped those sessions' messages and memory.
    await consistency.wait(target, WAIT_S)
    # 3. Crypto-shredding: whatever the log, the archive or a backup holds of the user is unreadable now.
    destroyed = await data_keys.destroy(tenant, user_id)
    try:
        p = partition_of(tenant, "memory", user_id, log.partitions)
        await log.redis.delete(log.keys.scoped_sessions(p, tenant, user_id))
    except (RedisConnectionError, RedisTimeoutError, OSError) as e:
        raise Unavailable(f"cannot reach Redis: {e}") from e
    # 4. The audit record, and 5. its projection: the user's rows leave the read models.
    event = UserForgotten(
        id=new_event_id(),
        aggregate_kind="memory",
        aggregate_id=user_id,
        tenant=tenant,
        actor=ctx.actor_for(None),
        correlation_id=ctx.correlation_id,
        payload=UserForgottenPayload(user_id=user_id),
    )
    result = await log.append([event])
    await consistency.wait({result.partition: result.position}, WAIT_S)
    aof = "not requested"
    if rewrite_aof:
        try:
            await log.redis.bgrewriteaof()
            aof = "started"
        except (RedisError, OSError) as e:
            aof = f"failed: {e}"
    # No user id in the line: the log is not the place to keep who was erased (the audit trail is).
    logger.info(
        "sessions: a user was forgotten (%d sessions deleted, key destroyed: %s)", len(deleted), destroyed
    )
    return ForgetResult(
        user_id=user_id, sessions_deleted=deleted, key_destroyed=destroyed, aof_rewrite=aof, result=result
    )

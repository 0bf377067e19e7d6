"""Privacy: opening sealed values on the way out, and forgetting a user (crypto-shredding).

Reads: the read models hold what the log holds, ciphertext included (``service.sealing``); ``Unsealer`` opens
it for the queries. A value whose key is gone reads as erased: a message's ``content`` None (a tool call's
``arguments`` ``""``) with ``metadata["erased"] = True``; a memory value None; an audit payload with
``"erased": True`` and the sealed fields None. Plain values (events published raw, or written with
encryption off) pass through.

``forget_user``: delete every live session of the user, wait until the read models applied that, destroy the
user's data key, append ``user.forgotten.v1`` (whose projection removes the user's memory and session rows)
and wait for it too. Idempotent. What it cannot reach: Redis' append-only file keeps the destroyed key until
the next rewrite (``rewrite_aof=True`` asks Redis for one), and backups taken before keep it too."""

from __future__ import annotations

import logging

import msgspec

from events.driver import redis_call
from events.errors import NotFound, SessionDeleted, Unavailable
from events.keys import partition_of
from events.log import AppendResult, EventLog
from events.schema import FORGET_REASON, UserForgotten, UserForgottenPayload, new_event_id
from projections.api import ReadModel
from service.commands import Commands
from service.consistency import Consistency, Positions, merge_positions
from service.keyring import DataKeys
from service.request import Context

__all__ = ["FORGOTTEN_REASON", "WAIT_S", "ForgetResult", "forget_user"]

logger = logging.getLogger("service.erasure")


FORGOTTEN_REASON = FORGET_REASON  # the read models drop the row of a session deleted with it


WAIT_S = 30.0  # an erasure waits for the projection longer than a read does


class ForgetResult(msgspec.Struct, frozen=True, kw_only=True):
    user_id: str
    sessions_deleted: list[str]  # live sessions this call deleted
    key_destroyed: bool  # False: the user had no data key (never wrote sealed data, or forgotten before)
    aof_rewrite: str  # "started", "not requested", or why it failed
    result: AppendResult  # the user.forgotten event's append


async def _sessions_of(log: EventLog, read_model: ReadModel, tenant: str, user_id: str) -> list[str]:
    page = await read_model.list_sessions(tenant, user_id, limit=0)
    found = [s.session_id for s in page.sessions]
    found += await log.scoped_sessions(tenant, user_id)
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
    await consistency.wait(await log.heads(), WAIT_S)
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
    p = partition_of(tenant, "memory", user_id, log.partitions)
    async with redis_call(log.timeout_s):
        await log.redis.delete(log.keys.scoped_sessions(p, tenant, user_id))
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
            async with redis_call(log.timeout_s):
                await log.redis.bgrewriteaof()
            aof = "started"
        except Unavailable as e:
            aof = f"failed: {e}"
    # No user id in the line: the log is not the place to keep who was erased (the audit trail is).
    logger.info(
        "sessions: a user was forgotten (%d sessions deleted, key destroyed: %s)", len(deleted), destroyed
    )
    return ForgetResult(
        user_id=user_id, sessions_deleted=deleted, key_destroyed=destroyed, aof_rewrite=aof, result=result
    )

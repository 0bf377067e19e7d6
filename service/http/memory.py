"""HTTP routes of memory: save, read, delete and clear a user's memory, user-scoped or session-scoped."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

from litestar import Request, Response, delete, get, put
from litestar.params import FromPath, JSONBody, QueryParameter

from service.http.dependencies import App, At, Ctx
from service.http.guard import memory_key
from service.http.problems import error_responses
from service.http.replies import positions_of, written
from service.http.shapes import (
    ClearReply,
    MemoriesReply,
    MemoryDeleteReply,
    MemoryPut,
    MemorySaveReply,
)

__all__ = ["clear_memory", "delete_memory", "get_memory", "save_memory"]

log = logging.getLogger("service.http")


@put(
    "/v1/users/{user_id:str}/memory/{key:path}",
    responses=error_responses(403, 404, 410, 413, 422),
    summary="Save a memory (user-scoped, or scoped to a session)",
    opt={"operation": "save_memory"},
)
async def save_memory(
    user_id: FromPath[str],
    key: FromPath[Path],
    request: Request[Any, Any, Any],
    data: JSONBody[MemoryPut],
    application: App,
    ctx: Ctx,
) -> Response[MemorySaveReply]:
    result = await application.commands.save_memory(
        ctx, user_id, memory_key(request), data.value, data.session_id
    )
    pos = positions_of(result)
    reply = MemorySaveReply(
        user_id=user_id,
        key=memory_key(request),
        session_id=data.session_id,
        version=result.version,
        position=pos[0] if pos else None,
    )
    return written(reply, pos)


@get(
    "/v1/users/{user_id:str}/memory",
    responses=error_responses(403, 404, 410),
    summary="A user's memory",
    opt={"operation": "get_memory"},
)
async def get_memory(
    user_id: FromPath[str],
    application: App,
    ctx: Ctx,
    at: At,
    session_id: Annotated[str | None, QueryParameter(description="that session's scope")] = None,
    merged: Annotated[
        bool, QueryParameter(description="with session_id: both scopes, the session's value winning")
    ] = False,
    key: Annotated[str | None, QueryParameter(description="only this key")] = None,
) -> MemoriesReply:
    records = await application.queries.memory(
        ctx, user_id, session_id=session_id, merged=merged, key=key, at=at
    )
    return MemoriesReply(memories={k: r.value for k, r in records.items()})


@delete(
    "/v1/users/{user_id:str}/memory/{key:path}",
    responses=error_responses(403, 404, 410, 413, 422),
    status_code=200,
    summary="Delete a memory key",
    opt={"operation": "delete_memory"},
)
async def delete_memory(
    user_id: FromPath[str],
    key: FromPath[Path],
    request: Request[Any, Any, Any],
    application: App,
    ctx: Ctx,
    session_id: Annotated[
        str | None, QueryParameter(description="the session scope; absent: the user scope")
    ] = None,
) -> Response[MemoryDeleteReply]:
    result = await application.commands.delete_memory(ctx, user_id, memory_key(request), session_id)
    pos = positions_of(result)
    return written(MemoryDeleteReply(deleted=result.removed > 0, position=pos[0] if pos else None), pos)


@delete(
    "/v1/users/{user_id:str}/memory",
    responses=error_responses(413, 422),
    status_code=200,
    summary="Clear a user's memory in every scope",
    opt={"operation": "clear_memory"},
)
async def clear_memory(user_id: FromPath[str], application: App, ctx: Ctx) -> Response[ClearReply]:
    cleared = await application.commands.clear_memory(ctx, user_id)
    pos = positions_of(*cleared.results)
    return written(ClearReply(count=cleared.count, positions=pos), pos)

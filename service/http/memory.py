"""HTTP routes of memory: save, read, delete and clear a user's memory, user-scoped or session-scoped."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

from litestar import Request, Response, delete, get, put
from litestar.params import FromPath, JSONBody, QueryParameter

from service.errors import BadRequest
from service.http.dependencies import App, At, Ctx
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


def _key(request: Request[Any, Any, Any]) -> str:
    """The memory key: the rest of the path after ``/memory/``, exactly as sent (so keys may hold '/', as is
    or as %2F; a user id cannot, so the first ``/memory/`` is the one)."""
    return str(request.scope["path"]).split("/memory/", 1)[1]


@put(
    "/v1/users/{user_id:str}/memory/{key:path}",
    responses=error_responses(403, 404, 410, 413, 422),
    summary="Save a memory (user-scoped, or scoped to a session)",
)
async def save_memory(
    user_id: FromPath[str],
    key: FromPath[Path],
    request: Request[Any, Any, Any],
    data: JSONBody[MemoryPut],
    application: App,
    ctx: Ctx,
) -> Response[MemorySaveReply]:
    result = await application.commands.save_memory(ctx, user_id, _key(request), data.value, data.session_id)
    application.metrics.observe_appends("save_memory", [result])
    pos = positions_of(result)
    reply = MemorySaveReply(
        user_id=user_id,
        key=_key(request),
        session_id=data.session_id,
        version=result.version,
        position=pos[0] if pos else None,
    )
    return written(reply, pos)


@get("/v1/users/{user_id:str}/memory", responses=error_responses(403, 404, 410), summary="A user's memory")
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
    if merged and session_id is None:
        raise BadRequest("merged=true needs a session_id", code="merged_needs_session")
    records = await application.queries.memory(
        ctx, user_id, session_id=session_id, merged=merged, key=key, at=at
    )
    return MemoriesReply(memories={k: r.value for k, r in records.items()})


@delete(
    "/v1/users/{user_id:str}/memory/{key:path}",
    responses=error_responses(403, 404, 410, 413, 422),
    status_code=200,
    summary="Delete a memory key",
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
    result = await application.commands.delete_memory(ctx, user_id, _key(request), session_id)
    application.metrics.observe_appends("delete_memory", [result])
    pos = positions_of(result)
    return written(MemoryDeleteReply(deleted=result.removed > 0, position=pos[0] if pos else None), pos)


@delete(
    "/v1/users/{user_id:str}/memory",
    responses=error_responses(413, 422),
    status_code=200,
    summary="Clear a user's memory in every scope",
)
async def clear_memory(user_id: FromPath[str], application: App, ctx: Ctx) -> Response[ClearReply]:
    cleared = await application.commands.clear_memory(ctx, user_id)
    application.metrics.observe_appends("clear_memory", cleared.results)
    pos = positions_of(*cleared.results)
    return written(ClearReply(count=cleared.count, positions=pos), pos)

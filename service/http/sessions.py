"""HTTP routes of sessions and their messages: create or resume, read, list, delete, append, page or
window. Each write replies with its position (body and ``X-Session-Position``)."""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from litestar import Request, Response, delete, get, post
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, HeaderParameter, JSONBody, QueryParameter

from service.http.dependencies import App, At, Ctx
from service.http.problems import error_responses
from service.http.replies import positions_of, session_reply, written
from service.http.shapes import (
    AddMessages,
    AppendReply,
    CreateSession,
    MessagesReply,
    SessionDeleteReply,
    SessionReply,
    SessionsReply,
)
from service.validation import check_strict_int
from service.windows import read_messages

__all__ = ["add_messages", "create_session", "delete_session", "get_messages", "get_session", "list_sessions"]

log = logging.getLogger("service.http")


@post(
    "/v1/sessions",
    responses={
        201: ResponseSpec(SessionReply, description="created", generate_examples=False),
        **error_responses(403, 409, 410, 413, 422),
    },
    status_code=200,
    summary="Get or create a session",
    opt={"operation": "create_session"},
)
async def create_session(
    data: JSONBody[CreateSession],
    application: App,
    ctx: Ctx,
    idempotency_key: Annotated[
        str | None,
        HeaderParameter(
            name="Idempotency-Key",
            description="without session_id: a retry with the same key returns the session the first created",
        ),
    ] = None,
) -> Response[SessionReply]:
    """Resumes the user's session ``session_id``, creates it under that id when unknown, or creates one with a
    new id when ``session_id`` is absent. 201 when created, 200 when resumed; another user's id: 403. Answers
    from the log, whether or not the read model has caught up."""
    write = await application.commands.get_or_create_session(
        ctx, data.user_id, data.session_id, data.metadata, idempotency_key
    )
    extra = {"Idempotent-Replayed": "true"} if write.result.duplicate else {}
    return written(
        session_reply(write.session, write.created),
        positions_of(write.result),
        201 if write.created else 200,
        **extra,
    )


@get(
    "/v1/sessions/{session_id:str}",
    responses=error_responses(404, 410),
    summary="Get a session",
    opt={"operation": "get_session"},
)
async def get_session(session_id: FromPath[str], application: App, ctx: Ctx, at: At) -> SessionReply:
    return session_reply(await application.queries.session(ctx, session_id, at))


@delete(
    "/v1/sessions/{session_id:str}",
    responses=error_responses(404, 410, 413, 422),
    status_code=200,
    summary="Delete a session and its session-scoped memory",
    opt={"operation": "delete_session"},
)
async def delete_session(
    session_id: FromPath[str], application: App, ctx: Ctx
) -> Response[SessionDeleteReply]:
    result = await application.commands.delete_session(ctx, session_id)
    pos = positions_of(result)
    return written(
        SessionDeleteReply(session_id=session_id, deleted=result.appended, position=pos[0] if pos else None),
        pos,
    )


@get(
    "/v1/users/{user_id:str}/sessions",
    responses=error_responses(),
    summary="A user's sessions, most recently updated first",
    opt={"operation": "list_sessions"},
)
async def list_sessions(
    user_id: FromPath[str],
    application: App,
    ctx: Ctx,
    at: At,
    limit: Annotated[int | None, QueryParameter(ge=0, le=1000, description="page size (default 50)")] = None,
    after: Annotated[str | None, QueryParameter(description="next_cursor of the previous page")] = None,
) -> SessionsReply:
    page = await application.queries.sessions_of(ctx, user_id, limit=limit, after=after, at=at)
    return SessionsReply(sessions=[session_reply(s) for s in page.sessions], next_cursor=page.next_cursor)


@post(
    "/v1/sessions/{session_id:str}/messages",
    responses=error_responses(404, 409, 410, 413, 422),
    status_code=201,
    summary="Append messages",
    opt={"operation": "add_messages"},
)
async def add_messages(
    session_id: FromPath[str],
    data: JSONBody[AddMessages],
    request: Request[Any, Any, Any],
    application: App,
    ctx: Ctx,
    idempotency_key: Annotated[
        str | None,
        HeaderParameter(
            name="Idempotency-Key", description="a retry with the same key returns the first result"
        ),
    ] = None,
) -> Response[AppendReply]:
    body = await request.json()  # the decoded body, cached: the conversion above took "3" for 3
    check_strict_int(body.get("expected_version") if isinstance(body, dict) else None, "expected_version")
    result = await application.commands.add_messages(
        ctx,
        session_id,
        data.messages,
        expected_version=data.expected_version,
        idempotency_key=idempotency_key,
    )
    pos = positions_of(result)
    reply = AppendReply(
        session_id=session_id,
        version=result.version,
        message_count=result.message_count,
        position=pos[0] if pos else None,
        appended=result.appended,
        duplicate=result.duplicate,
        event_ids=result.event_ids,
    )
    extra = {"Idempotent-Replayed": "true"} if result.duplicate else {}
    return written(reply, pos, 201, **extra)


@get(
    "/v1/sessions/{session_id:str}/messages",
    responses=error_responses(404, 410),
    summary="A page of a session's messages",
    opt={"operation": "get_messages"},
)
async def get_messages(
    session_id: FromPath[str],
    application: App,
    ctx: Ctx,
    at: At,
    limit: Annotated[int | None, QueryParameter(ge=0, description="page size; absent or 0: all")] = None,
    offset: Annotated[
        int | None, QueryParameter(ge=0, description="skip that many, in the chosen order")
    ] = None,
    order: Annotated[
        Literal["asc", "desc"], QueryParameter(description="asc: oldest first; desc: latest first")
    ] = "asc",
    after: Annotated[str | None, QueryParameter(description="next_cursor of the previous page")] = None,
    before: Annotated[str | None, QueryParameter(description="page the other way")] = None,
    strategy: Annotated[
        str | None,
        QueryParameter(
            description="a context window instead of a page: last_n (the newest `limit`, oldest first), "
            "token_budget (the newest messages within `budget` tokens), truncate (= last_n); a window "
            "never splits a tool call from its results"
        ),
    ] = None,
    budget: Annotated[int | None, QueryParameter(ge=0, description="token budget of token_budget")] = None,
) -> MessagesReply:
    page = await read_messages(
        application.queries,
        ctx,
        session_id,
        strategy=strategy,
        limit=limit,
        budget=budget,
        offset=offset,
        order=order,
        after=after,
        before=before,
        at=at,
    )
    return MessagesReply(messages=page.messages, total=page.total, next_cursor=page.next_cursor)

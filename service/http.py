"""The HTTP/JSON adapter (Litestar, msgspec native): routes onto the application core, problem+json errors.

Read-your-writes: every write replies with its position, in the body and in the ``X-Session-Position`` header
(``<partition>:<ms>-<seq>``, comma-separated when a write touched several partitions). Every read waits,
bounded, until the read model shows what the aggregates it reads had in the log when the read began, plus any
positions the client passes in the ``X-Session-Position`` header or the ``min_position`` query parameter (same
format). A read that cannot catch up in time fails with 503, ``code: read_model_behind`` and ``Retry-After``.

Security (``service.auth``, ``service.http_auth``): with API keys configured every request but the health
checks needs ``Authorization: Bearer <key>`` and the key's tenant is the request's tenant.

Request headers: ``X-Tenant-Id`` (default tenant otherwise; with keys only the key's own tenant), ``X-Actor``
(``kind:id``, kind one of user, model, service, admin; defaults to the user the request names, else the
service), ``X-Correlation-Id`` (generated when absent, echoed back, recorded in every event),
``Idempotency-Key`` (on ``POST .../messages``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from litestar import Litestar, Request, Response, delete, get, post, put
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.params import FromPath, FromQuery, HeaderParameter, JSONBody, QueryParameter

from events.codec import decode_event
from projections.api import AuditFilter

from .app import Application
from .auth import Gate
from .consistency import format_positions, merge_positions
from .context import read_window, refuse_paging
from .dependencies import App, At, Ctx, dependencies
from .errors import BadRequest
from .http_auth import authorize, principal_of
from .middleware import observe
from .openapi import openapi_document
from .privacy import ForgetResult
from .problems import PROBLEM_JSON, error_responses, exception_handlers
from .settings import ServiceSettings
from .wire import (
    POSITION_HEADER,
    AddMessages,
    AppendReply,
    AuditReply,
    ClearReply,
    CreateSession,
    MemoriesReply,
    MemoryDeleteReply,
    MemoryPut,
    MemorySaveReply,
    MessagesReply,
    Position,
    PublishedAggregate,
    PublishReply,
    PublishRequest,
    SessionDeleteReply,
    SessionReply,
    SessionsReply,
    positions_of,
    session_reply,
)

__all__ = ["PROBLEM_JSON", "create_app"]

log = logging.getLogger("service.http")


def _key(request: Request[Any, Any, Any]) -> str:
    """The memory key: the rest of the path after ``/memory/``, exactly as sent (so keys may hold '/', as is
    or as %2F; a user id cannot, so the first ``/memory/`` is the one)."""
    return str(request.scope["path"]).split("/memory/", 1)[1]


def _written(body: Any, positions: list[Position], status: int = 200, **headers: str) -> Response[Any]:
    if positions:
        headers[POSITION_HEADER] = format_positions(
            merge_positions({}, {p.partition: p.id for p in positions})
        )
    return Response(body, status_code=status, headers=headers)


# -- sessions ----------------------------------------------------------------------------------------------


@post(
    "/v1/sessions",
    responses={
        201: ResponseSpec(SessionReply, description="created", generate_examples=False),
        **error_responses(403, 410, 413, 422),
    },
    status_code=200,
    summary="Get or create a session",
)
async def create_session(data: JSONBody[CreateSession], application: App, ctx: Ctx) -> Response[SessionReply]:
    """Resumes the user's session ``session_id``, creates it under that id when unknown, or creates one with a
    new id when ``session_id`` is absent. 201 when created, 200 when resumed; another user's id: 403."""
    write = await application.commands.get_or_create_session(
        ctx, data.user_id, data.session_id, data.metadata
    )
    application.metrics.observe_appends("create_session", [write.result])
    record = await application.queries.session(
        ctx, write.session_id, {write.result.partition: write.result.position or ""}
    )
    return _written(
        session_reply(record, write.created), positions_of(write.result), 201 if write.created else 200
    )


@get("/v1/sessions/{session_id:str}", responses=error_responses(404, 410), summary="Get a session")
async def get_session(session_id: FromPath[str], application: App, ctx: Ctx, at: At) -> SessionReply:
    return session_reply(await application.queries.session(ctx, session_id, at))


@delete(
    "/v1/sessions/{session_id:str}",
    responses=error_responses(404, 410, 413, 422),
    status_code=200,
    summary="Delete a session and its session-scoped memory",
)
async def delete_session(
    session_id: FromPath[str], application: App, ctx: Ctx
) -> Response[SessionDeleteReply]:
    result = await application.commands.delete_session(ctx, session_id)
    application.metrics.observe_appends("delete_session", [result])
    pos = positions_of(result)
    return _written(
        SessionDeleteReply(session_id=session_id, deleted=result.appended, position=pos[0] if pos else None),
        pos,
    )


@get(
    "/v1/users/{user_id:str}/sessions",
    responses=error_responses(),
    summary="A user's sessions, most recently updated first",
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


# -- messages ----------------------------------------------------------------------------------------------


@post(
    "/v1/sessions/{session_id:str}/messages",
    responses=error_responses(404, 409, 410, 413, 422),
    status_code=201,
    summary="Append messages",
)
async def add_messages(
    session_id: FromPath[str],
    data: JSONBody[AddMessages],
    application: App,
    ctx: Ctx,
    idempotency_key: Annotated[
        str | None,
        HeaderParameter(
            name="Idempotency-Key", description="a retry with the same key returns the first result"
        ),
    ] = None,
) -> Response[AppendReply]:
    result = await application.commands.add_messages(
        ctx,
        session_id,
        data.messages,
        expected_version=data.expected_version,
        idempotency_key=idempotency_key,
    )
    application.metrics.observe_appends("add_messages", [result])
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
    return _written(reply, pos, 201, **extra)


@get(
    "/v1/sessions/{session_id:str}/messages",
    responses=error_responses(404, 410),
    summary="A page of a session's messages",
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
    if strategy:
        refuse_paging(offset=offset, order=order, cursor=after or before)
        window = await read_window(
            application.queries, ctx, session_id, strategy, limit=limit or None, budget=budget, at=at
        )
        return MessagesReply(messages=window.messages, total=window.total)
    page = await application.queries.messages(
        ctx, session_id, limit=limit, offset=offset, order=order, after=after, before=before, at=at
    )
    return MessagesReply(messages=page.messages, total=page.total, next_cursor=page.next_cursor)


# -- memory ------------------------------------------------------------------------------------------------


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
    return _written(reply, pos)


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
    return _written(MemoryDeleteReply(deleted=result.removed > 0, position=pos[0] if pos else None), pos)


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
    return _written(ClearReply(count=cleared.count, positions=pos), pos)


# -- events: publish and audit -----------------------------------------------------------------------------


@post(
    "/v1/events",
    responses=error_responses(403, 404, 409, 410, 413, 422),
    status_code=200,
    summary="Publish a batch of events from another service",
)
async def publish_events(
    data: JSONBody[PublishRequest], application: App, ctx: Ctx, request: Request[Any, Any, Any]
) -> Response[PublishReply]:
    """One atomic append per aggregate, in the order the aggregates first appear; the log checks every rule.
    The first refused aggregate stops the batch (the problem says which were appended); retrying the whole
    batch with the same event ids is safe."""
    decoded = []
    strict_tenant = "x-tenant-id" in request.headers or principal_of(request) is not None
    for i, raw in enumerate(data.events):
        tag = raw.get("type")
        event = decode_event(msgspec.json.encode(raw), tag if isinstance(tag, str) else None)
        if strict_tenant and event.tenant != ctx.tenant:
            raise BadRequest(
                f"event {i} is for tenant {event.tenant!r}, not {ctx.tenant!r}", code="tenant_mismatch"
            )
        decoded.append(event)
    results = await application.commands.publish(decoded)
    application.metrics.observe_appends("publish_events", results)
    firsts: dict[tuple[str, str], Any] = {}
    for e in decoded:
        firsts.setdefault((e.aggregate_kind, e.aggregate_id), e)
    out = [
        PublishedAggregate(
            aggregate_kind=kind,
            aggregate_id=agg,
            version=r.version,
            position=Position(r.partition, r.position) if r.position else None,
            appended=r.appended,
            duplicate=r.duplicate,
            event_ids=r.event_ids,
        )
        for (kind, agg), r in zip(firsts, results, strict=True)
    ]
    return _written(PublishReply(results=out), positions_of(*results))


def _audit_filter(ctx: Ctx, **kw: Any) -> AuditFilter:
    return AuditFilter(tenant=ctx.tenant, **kw)


@get(
    "/v1/events",
    responses=error_responses(404),
    summary="The audit trail: archived events with their envelopes, oldest first",
)
async def audit_events(
    application: App,
    ctx: Ctx,
    at: At,
    type: Annotated[list[str] | None, QueryParameter(description="event types (repeatable)")] = None,
    user_id: FromQuery[str | None] = None,
    session_id: FromQuery[str | None] = None,
    actor_kind: FromQuery[str | None] = None,
    actor_id: FromQuery[str | None] = None,
    since: Annotated[datetime | None, QueryParameter(description="recorded_at >= since (RFC 3339)")] = None,
    until: Annotated[datetime | None, QueryParameter(description="recorded_at < until (RFC 3339)")] = None,
    limit: Annotated[int | None, QueryParameter(ge=0, le=1000, description="page size (default 100)")] = None,
    after: FromQuery[str | None] = None,
) -> AuditReply:
    flt = _audit_filter(
        ctx,
        session_id=session_id,
        user_id=user_id,
        types=type,
        since=since,
        until=until,
        actor_kind=actor_kind,
        actor_id=actor_id,
    )
    page = await application.queries.audit(ctx, flt, limit=limit, after=after, at=at)
    return AuditReply(events=page.events, next_cursor=page.next_cursor)


@get(
    "/v1/sessions/{session_id:str}/events",
    responses=error_responses(404),
    summary="The audit trail of one session",
)
async def session_events(
    session_id: FromPath[str],
    application: App,
    ctx: Ctx,
    at: At,
    type: Annotated[list[str] | None, QueryParameter(description="event types (repeatable)")] = None,
    actor_kind: FromQuery[str | None] = None,
    actor_id: FromQuery[str | None] = None,
    since: FromQuery[datetime | None] = None,
    until: FromQuery[datetime | None] = None,
    limit: Annotated[int | None, QueryParameter(ge=0, le=1000)] = None,
    after: FromQuery[str | None] = None,
) -> AuditReply:
    flt = _audit_filter(
        ctx,
        session_id=session_id,
        types=type,
        since=since,
        until=until,
        actor_kind=actor_kind,
        actor_id=actor_id,
    )
    page = await application.queries.audit(ctx, flt, limit=limit, after=after, at=at)
    return AuditReply(events=page.events, next_cursor=page.next_cursor)


# -- operations --------------------------------------------------------------------------------------------


# -- privacy ----------------------------------------------------------------------------------------------


@post(
    "/v1/users/{user_id:str}/forget",
    responses=error_responses(),
    status_code=200,
    summary="Forget a user (admin): erase their sessions, messages and memory (crypto-shredding)",
)
async def forget_user(
    user_id: FromPath[str],
    application: App,
    ctx: Ctx,
    rewrite_aof: Annotated[
        bool, QueryParameter(description="ask Redis to rewrite its append-only file (drops the key there)")
    ] = False,
) -> Response[ForgetResult]:
    """Deletes the user's live sessions, destroys their data key (what the log and the archive hold of them
    can no longer be decrypted), removes their rows from the read models and records ``user.forgotten.v1``
    (the user id, nothing of what was erased). Running it again is harmless."""
    result = await application.forget_user(ctx, user_id, rewrite_aof=rewrite_aof)
    return _written(result, positions_of(result.result))


@get("/healthz", summary="Liveness", include_in_schema=False)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@get(
    "/readyz",
    summary="Readiness: the log and the read model reachable, migrations applied",
    include_in_schema=False,
)
async def readyz(application: App) -> dict[str, Any]:
    return {"status": "ready", "checks": await application.readiness()}


@get("/metrics", include_in_schema=False)
async def metrics(application: App) -> Response[bytes]:
    from .metrics import CONTENT_TYPE_LATEST

    await application.refresh_metrics()
    return Response(application.metrics.render(), media_type=CONTENT_TYPE_LATEST)


@get("/openapi.json", include_in_schema=False)
async def openapi_json(request: Request[Any, Any, Any]) -> dict[str, Any]:
    return openapi_document(request.app)


# -- the app -----------------------------------------------------------------------------------------------


def create_app(
    application: Application | None = None,
    settings: ServiceSettings | None = None,
    gate: Gate | None = None,
) -> Litestar:
    """The Litestar app over ``application``; with none, the app opens one from ``settings`` (or the
    environment) when it starts and closes it when it stops. ``gate``: the keys and rate limit (default: from
    the settings)."""
    if application is None:
        settings = settings or ServiceSettings.from_env()
    effective = application.settings if application is not None else settings
    assert effective is not None
    gate = gate or Gate.from_settings(effective)

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        if application is not None:
            app.state["application"] = application
            yield
            return
        assert settings is not None
        opened = await Application.open(settings)
        log.info("sessions: %s", opened.mode)
        app.state["application"] = opened
        try:
            yield
        finally:
            await opened.close()

    state = State({"application": application, "gate": gate} if application is not None else {"gate": gate})
    return Litestar(
        route_handlers=[
            create_session,
            get_session,
            delete_session,
            list_sessions,
            add_messages,
            get_messages,
            save_memory,
            get_memory,
            delete_memory,
            clear_memory,
            publish_events,
            audit_events,
            session_events,
            forget_user,
            healthz,
            readyz,
            metrics,
            openapi_json,
        ],
        dependencies=dependencies(),
        guards=[authorize],
        request_max_body_size=effective.max_body_bytes,
        exception_handlers=exception_handlers(),
        middleware=[observe],
        lifespan=[lifespan],
        state=state,
        openapi_config=OpenAPIConfig(
            title="Sessions",
            version="0.1.0",
            description=__doc__,
            path="/schema",
        ),
        debug=False,
    )

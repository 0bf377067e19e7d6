"""HTTP routes of the log itself: publishing raw events, the audit trail (a session's, a user's, every
event), and forgetting a user."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, get, post
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from events.codec import decode_event
from projections.api import AuditFilter
from service.erasure import ForgetResult
from service.errors import PermissionDenied
from service.http.dependencies import App, At, Ctx
from service.http.guard import principal_of
from service.http.problems import error_responses
from service.http.replies import positions_of, written
from service.http.shapes import (
    AuditReply,
    Position,
    PublishedAggregate,
    PublishReply,
    PublishRequest,
)

__all__ = ["audit_events", "forget_user", "publish_events", "session_events"]

log = logging.getLogger("service.http")


@post(
    "/v1/events",
    responses=error_responses(403, 404, 409, 410, 413, 422),
    status_code=200,
    summary="Publish a batch of events from another service",
    opt={"operation": "publish_events"},
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
            raise PermissionDenied(
                f"event {i} is for tenant {event.tenant!r}, not {ctx.tenant!r}", code="tenant_mismatch"
            )
        decoded.append(event)
    results = await application.commands.publish(decoded)
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
    return written(PublishReply(results=out), positions_of(*results))


async def _audit_reply(
    application: App, ctx: Ctx, flt: AuditFilter, limit: int | None, after: str | None, at: At
) -> AuditReply:
    page = await application.queries.audit(ctx, flt, limit=limit, after=after, at=at)
    return AuditReply(events=page.events, next_cursor=page.next_cursor)


def _audit_filter(ctx: Ctx, **kw: Any) -> AuditFilter:
    return AuditFilter(tenant=ctx.tenant, **kw)


@get(
    "/v1/events",
    responses=error_responses(404),
    summary="The audit trail: archived events with their envelopes, oldest first",
    opt={"operation": "audit_events"},
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
    return await _audit_reply(application, ctx, flt, limit, after, at)


@get(
    "/v1/sessions/{session_id:str}/events",
    responses=error_responses(404),
    summary="The audit trail of one session",
    opt={"operation": "session_events"},
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
    return await _audit_reply(application, ctx, flt, limit, after, at)


@post(
    "/v1/users/{user_id:str}/forget",
    responses=error_responses(),
    status_code=200,
    summary="Forget a user (admin): erase their sessions, messages and memory (crypto-shredding)",
    opt={"operation": "forget_user"},
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
    return written(result, positions_of(result.result))

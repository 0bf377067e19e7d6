"""The gRPC adapter: ``proto.SessionService``, wire-compatible with the original platform's, on port 50052.

One ``SessionServicer`` over the application core (``app.commands`` / ``app.queries``), served by a
``grpc.aio`` server beside HTTP (``sessions serve``) or alone (``start_grpc_server``). What changed from the
original, on purpose:

* bad input is INVALID_ARGUMENT, an unknown session NOT_FOUND, another user's session PERMISSION_DENIED, a
  version conflict ABORTED, a read that timed out waiting for the read model UNAVAILABLE; never INTERNAL for
  bad input. The message reads ``<code>: <text>`` and the trailing metadata carries ``error-code`` (and
  ``error-details``, JSON, when there are extras such as ``current_version``);
* deleting an unknown session or a missing memory key still answers ``success=false``, as the original did;
* memory values are JSON text encoded once (the original encoded them twice);
* a message's ``name`` is kept, ``strategy`` is applied (``service.windows``), sessions can be listed and the
  audit trail read;
* read-your-writes: a read sees every write that finished before it began (the core's queries wait);
* with API keys configured (``service.security``) every call needs ``authorization: Bearer <key>`` metadata:
  UNAUTHENTICATED without a valid one, PERMISSION_DENIED (``insufficient_role``) for a reader's write or a
  non-admin's ``GetEvents`` across users, RESOURCE_EXHAUSTED (``rate_limited``) past the rate limit.

Each method is an operation of ``service.operations`` (``RPC_OPERATIONS``): its role, input checks and metrics
are the ones HTTP applies, through the same ``Gate.enter``; statuses come from ``service.errors.statuses_of``.
"""

from __future__ import annotations

import contextvars
import functools
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar

import grpc
import msgspec

from events.errors import ConfigurationError, NotFound, SessionsError
from projections.api import AuditFilter
from proto import sessions_pb2 as pb
from proto import sessions_pb2_grpc as pb_grpc
from service.app import Application
from service.errors import BadRequest, grpc_code_of
from service.grpc.convert import (
    audit_event,
    decode_json,
    encode_json,
    epoch_ms,
    from_epoch_ms,
    message_from_proto,
    message_to_proto,
    optional_id,
    required,
    session_to_proto,
)
from service.operations import OPERATIONS, Operation
from service.request import Context, context_of
from service.security.gate import Gate
from service.security.keys import Principal
from service.settings import ServiceSettings
from service.windows import read_messages

__all__ = [
    "GRPC_HOST_ENV",
    "RPC_OPERATIONS",
    "SessionServicer",
    "create_grpc_server",
    "grpc_host",
    "operation_of",
    "start_grpc_server",
]

log = logging.getLogger("service.grpc")

GRPC_HOST_ENV = "SESSIONS_GRPC_HOST"  # bind address of gRPC; default: the HTTP one (SESSIONS_HTTP_HOST)

Req = TypeVar("Req")
Rep = TypeVar("Rep")
Handler = Callable[[Any, Req, grpc.aio.ServicerContext], Awaitable[Rep]]

# The operation (``service.operations``) of each method of ``proto.SessionService``; a method missing here is
# refused at start-up (``create_grpc_server``) and by tests/security/test_policy.py.
RPC_OPERATIONS: dict[str, str] = {
    "GetOrCreateSession": "create_session",
    "DeleteSession": "delete_session",
    "ListSessions": "list_sessions",
    "AddMessages": "add_messages",
    "GetMessages": "get_messages",
    "SaveMemory": "save_memory",
    "GetMemory": "get_memory",
    "DeleteMemory": "delete_memory",
    "ClearUserMemory": "clear_memory",
    "GetEvents": "audit_events",
}
_principal: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("principal", default=None)


def operation_of(rpc_name: str) -> Operation | None:
    return OPERATIONS.get(RPC_OPERATIONS.get(rpc_name, ""))


def undeclared_methods() -> list[str]:
    """Methods of ``proto.SessionService`` without a declared operation."""
    service = pb.DESCRIPTOR.services_by_name["SessionService"]
    return [m.name for m in service.methods if operation_of(m.name) is None]


def _inputs(request: Any) -> dict[str, Any]:
    """The fields a request carries, by name (absent optional fields left out)."""
    return {field.name: value for field, value in request.ListFields()}


def _metadata(context: grpc.aio.ServicerContext) -> dict[str, str]:
    return {k.lower(): v for k, v in context.invocation_metadata() or () if isinstance(v, str)}


# gRPC carries the status message and the trailers as metadata, refused whole over 16 KB (and a message may
# echo the input: a megabyte cursor): a refusal must stay small enough to arrive with its code.
_MAX_TEXT = 512


def _bounded(text: str) -> str:
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 1] + "…"


def _details(error: SessionsError) -> str | None:
    if not error.details:
        return None
    try:
        # ASCII only (a metadata value must be), so json's escapes rather than msgspec's UTF-8.
        text = json.dumps(msgspec.to_builtins(error.details), ensure_ascii=True, separators=(",", ":"))
    except (TypeError, ValueError, msgspec.EncodeError):
        return None
    return text if len(text) <= _MAX_TEXT else None


def rpc(handler: Handler[Req, Rep]) -> Handler[Req, Rep]:
    """Run a handler with its request's context and turn errors into statuses: a ``SessionsError`` into its
    status with the stable code; anything else into INTERNAL with a logged reference, never a stack trace."""

    @functools.wraps(handler)
    async def wrapper(self: SessionServicer, request: Req, context: grpc.aio.ServicerContext) -> Rep:
        token = None
        try:
            principal = self.admit(handler.__name__, request, context)
            token = _principal.set(principal)
            return await handler(self, request, context)
        except SessionsError as e:
            trailing: list[tuple[str, str]] = [("error-code", e.code)]
            if (extra := _details(e)) is not None:
                trailing.append(("error-details", extra))
            await context.abort(
                grpc.StatusCode[grpc_code_of(e)],
                _bounded(f"{e.code}: {e.message}"),
                trailing_metadata=tuple(trailing),
            )
        except grpc.aio.AbortError:
            raise
        except Exception:
            ref = uuid.uuid4().hex[:12]
            log.exception("internal error %s in %s", ref, handler.__name__)
            await context.abort(
                grpc.StatusCode.INTERNAL,
                f"internal_error: an internal error occurred (reference {ref}); it was logged",
                trailing_metadata=(("error-code", "internal_error"),),
            )
        finally:
            if token is not None:
                _principal.reset(token)
        raise AssertionError("unreachable: context.abort raises")  # pragma: no cover

    return wrapper


class SessionServicer(pb_grpc.SessionServiceServicer):  # type: ignore[misc]
    def __init__(self, app: Application, gate: Gate | None = None) -> None:
        self.app = app
        self.gate = gate or Gate.from_settings(app.settings)

    def admit(self, rpc_name: str, request: Any, context: grpc.aio.ServicerContext) -> Principal | None:
        """The key, tenant, rate, role and input checks of a call (``Gate.enter``), before its handler runs.
        A method with no declared operation is an admin's (``create_grpc_server`` refuses such a servicer)."""
        md = _metadata(context)
        return self.gate.enter(
            operation_of(rpc_name) or OPERATIONS["metrics"],
            _inputs(request),
            authorization=md.get("authorization"),
            tenant_asked=md.get("x-tenant-id"),
            client=context.peer(),
            actor=md.get("x-actor"),
        )

    def ctx(self, context: grpc.aio.ServicerContext) -> Context:
        principal = _principal.get()
        tenant = principal.tenant if principal is not None else self.app.settings.default_tenant
        return context_of(_metadata(context), tenant)

    # -- sessions ------------------------------------------------------------------------------------------

    @rpc
    async def GetOrCreateSession(
        self, request: pb.GetOrCreateSessionRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetOrCreateSessionResponse:
        ctx = self.ctx(context)
        user_id = required(request.user_id, "user_id")
        metadata = None
        if request.HasField("metadata_json") and request.metadata_json:
            metadata = decode_json(request.metadata_json, "metadata_json")
            if not isinstance(metadata, dict):
                raise BadRequest("metadata_json must be a JSON object", code="invalid_metadata_json")
        write = await self.app.commands.get_or_create_session(
            ctx,
            user_id,
            optional_id(request, "session_id"),
            metadata,
            _metadata(context).get("idempotency-key"),
        )
        record = write.session
        return pb.GetOrCreateSessionResponse(
            session_id=record.session_id,
            user_id=record.user_id,
            created_at=epoch_ms(record.created_at),
            updated_at=epoch_ms(record.updated_at),
            created=write.created,
            message_count=record.message_count,
            metadata_json=encode_json(record.metadata),
        )

    @rpc
    async def DeleteSession(
        self, request: pb.DeleteSessionRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteSessionResponse:
        ctx = self.ctx(context)
        session_id = required(request.session_id, "session_id")
        try:
            result = await self.app.commands.delete_session(
                ctx, session_id, request.reason if request.HasField("reason") else None
            )
        except NotFound:  # unknown or already deleted: the original answered false
            return pb.DeleteSessionResponse(success=False)
        return pb.DeleteSessionResponse(success=result.appended)

    @rpc
    async def ListSessions(
        self, request: pb.ListSessionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListSessionsResponse:
        ctx = self.ctx(context)
        page = await self.app.queries.sessions_of(
            ctx,
            required(request.user_id, "user_id"),
            limit=_non_negative(request, "limit"),
            after=optional_id(request, "after"),
        )
        reply = pb.ListSessionsResponse(sessions=[session_to_proto(s) for s in page.sessions])
        if page.next_cursor is not None:
            reply.next_cursor = page.next_cursor
        return reply

    # -- messages ------------------------------------------------------------------------------------------

    @rpc
    async def AddMessages(
        self, request: pb.AddMessagesRequest, context: grpc.aio.ServicerContext
    ) -> pb.AddMessagesResponse:
        ctx = self.ctx(context)
        session_id = required(request.session_id, "session_id")
        messages = [message_from_proto(m, i) for i, m in enumerate(request.messages)]
        result = await self.app.commands.add_messages(
            ctx,
            session_id,
            messages,
            expected_version=request.expected_version if request.HasField("expected_version") else None,
            idempotency_key=request.idempotency_key if request.HasField("idempotency_key") else None,
        )
        return pb.AddMessagesResponse(
            success=True,
            message_count=len(messages),
            total_messages=result.message_count or 0,
            version=result.version,
            duplicate=result.duplicate,
        )

    @rpc
    async def GetMessages(
        self, request: pb.GetMessagesRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetMessagesResponse:
        ctx = self.ctx(context)
        session_id = required(request.session_id, "session_id")
        limit = _non_negative(request, "limit")
        offset = _non_negative(request, "offset")
        page = await read_messages(
            self.app.queries,
            ctx,
            session_id,
            strategy=request.strategy if request.HasField("strategy") else None,
            limit=limit,
            budget=_non_negative(request, "budget"),
            offset=offset,
            order=_order(request),
            after=optional_id(request, "after"),
        )
        reply = pb.GetMessagesResponse(
            messages=[message_to_proto(m) for m in page.messages], total_count=page.total
        )
        if page.next_cursor is not None:
            reply.next_cursor = page.next_cursor
        return reply

    # -- memory --------------------------------------------------------------------------------------------

    @rpc
    async def SaveMemory(
        self, request: pb.SaveMemoryRequest, context: grpc.aio.ServicerContext
    ) -> pb.SaveMemoryResponse:
        ctx = self.ctx(context)
        user_id = required(request.user_id, "user_id")
        key = required(request.key, "key")
        value = decode_json(request.value, "value")
        result = await self.app.commands.save_memory(
            ctx, user_id, key, value, optional_id(request, "session_id")
        )
        return pb.SaveMemoryResponse(success=True, version=result.version)

    @rpc
    async def GetMemory(
        self, request: pb.GetMemoryRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetMemoryResponse:
        ctx = self.ctx(context)
        session_id = optional_id(request, "session_id")
        records = await self.app.queries.memory(
            ctx,
            required(request.user_id, "user_id"),
            session_id=session_id,
            merged=request.merged,
            key=optional_id(request, "key"),
        )
        return pb.GetMemoryResponse(memories={k: encode_json(r.value) for k, r in records.items()})

    @rpc
    async def DeleteMemory(
        self, request: pb.DeleteMemoryRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteMemoryResponse:
        ctx = self.ctx(context)
        user_id = required(request.user_id, "user_id")
        key = required(request.key, "key")
        try:
            result = await self.app.commands.delete_memory(
                ctx, user_id, key, optional_id(request, "session_id")
            )
        except NotFound:  # the session of the scope is unknown or deleted: the key is not there either
            return pb.DeleteMemoryResponse(success=False)
        return pb.DeleteMemoryResponse(success=result.removed > 0)

    @rpc
    async def ClearUserMemory(
        self, request: pb.ClearUserMemoryRequest, context: grpc.aio.ServicerContext
    ) -> pb.ClearUserMemoryResponse:
        ctx = self.ctx(context)
        cleared = await self.app.commands.clear_memory(ctx, required(request.user_id, "user_id"))
        return pb.ClearUserMemoryResponse(count=cleared.count)

    # -- audit ---------------------------------------------------------------------------------------------

    @rpc
    async def GetEvents(
        self, request: pb.GetEventsRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetEventsResponse:
        ctx = self.ctx(context)
        flt = AuditFilter(
            tenant=ctx.tenant,
            session_id=optional_id(request, "session_id"),
            user_id=optional_id(request, "user_id"),
            types=list(request.types) or None,
            since=from_epoch_ms(request.since, "since") if request.HasField("since") else None,
            until=from_epoch_ms(request.until, "until") if request.HasField("until") else None,
        )
        page = await self.app.queries.audit(
            ctx, flt, limit=_non_negative(request, "limit"), after=optional_id(request, "after")
        )
        reply = pb.GetEventsResponse(events=[audit_event(e) for e in page.events])
        if page.next_cursor is not None:
            reply.next_cursor = page.next_cursor
        return reply


def _non_negative(request: Any, field: str) -> int | None:
    if not request.HasField(field):
        return None
    value: int = getattr(request, field)
    if value < 0:
        raise BadRequest(f"{field} must not be negative", code=f"invalid_{field}")
    return value


def _order(request: pb.GetMessagesRequest) -> Literal["asc", "desc"]:
    if not request.HasField("order") or not request.order:
        return "asc"
    order = request.order.strip().lower()
    if order not in ("asc", "desc"):
        raise BadRequest(f"order must be 'asc' or 'desc', not {request.order!r}", code="invalid_order")
    return "desc" if order == "desc" else "asc"


def create_grpc_server(
    app: Application, address: str, gate: Gate | None = None
) -> tuple[grpc.aio.Server, int]:
    """A ``grpc.aio`` server with the servicer, bound (not started) to ``address`` (``host:port``, port 0:
    any free one). Returns the server and the port it bound. ``gate``: keys and rate (default: settings)."""
    # so_reuseport off: a second server on a taken port fails instead of silently sharing it.
    if missing := undeclared_methods():
        raise ConfigurationError(
            f"gRPC methods without a declared operation (service.operations): {', '.join(missing)}",
            code="undeclared_operation",
        )
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    pb_grpc.add_SessionServiceServicer_to_server(SessionServicer(app, gate), server)
    try:
        port = server.add_insecure_port(address)
    except RuntimeError as e:  # grpc's way of saying the address is taken or invalid
        port = 0
        cause: Exception | None = e
    else:
        cause = None
    if port == 0:
        raise ConfigurationError(
            f"gRPC cannot listen on {address} (in use, or not an address of this host); set SESSIONS_PORT "
            f"or {GRPC_HOST_ENV}",
            code="grpc_address_unavailable",
        ) from cause
    return server, port


def grpc_host(settings: ServiceSettings) -> str:
    return settings.grpc_host or settings.http_host


async def start_grpc_server(
    app: Application, settings: ServiceSettings | None = None, gate: Gate | None = None
) -> grpc.aio.Server:
    """Bind ``SESSIONS_GRPC_HOST`` (default: the HTTP host) and ``SESSIONS_PORT`` (default 50052), start."""
    settings = settings or app.settings
    host = grpc_host(settings)
    server, port = create_grpc_server(app, f"{host}:{settings.grpc_port}", gate)
    await server.start()
    log.info("sessions: gRPC SessionService on %s:%d", host, port)
    return server

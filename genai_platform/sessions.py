"""``platform.sessions``: the original SDK's session client, same methods and return shapes, over gRPC.

Beyond the original: ``list_sessions``, ``get_events`` (the audit trail), ``get_messages(order="desc")`` and
``budget=`` for the ``token_budget`` strategy, ``merged=`` for memory, ``idempotency_key=`` and
``expected_version=`` for appends. Failures raise ``genai_platform.errors`` (also ``grpc.RpcError``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import grpc
import msgspec

from proto import sessions_pb2 as pb
from proto import sessions_pb2_grpc as pb_grpc
from proto.messages import OPTIONAL_FIELDS, message_to_proto

from .errors import from_rpc_error

__all__ = ["Session", "SessionClient", "message_to_dict", "message_to_proto"]

Session = pb.GetOrCreateSessionResponse
"""What ``get_or_create`` returns: ``session_id``, ``user_id``, ``created_at``, ``updated_at`` (epoch ms),
``created``, ``message_count``, as the original's response message."""


def message_to_dict(message: pb.Message) -> dict[str, Any]:
    """The original's shape: ``role`` and ``timestamp``, then ``content``, ``tool_call_id``, ``name`` and
    ``tool_calls`` when present."""
    out: dict[str, Any] = {"role": message.role, "timestamp": message.timestamp}
    for key in OPTIONAL_FIELDS:
        if message.HasField(key):
            out[key] = getattr(message, key)
    if message.tool_calls:
        out["tool_calls"] = [
            {
                "id": tc.id,
                "type": tc.type,
                "function": {"name": tc.function.name, "arguments": tc.function.arguments},
            }
            for tc in message.tool_calls
        ]
    return out


def _json(value: Any) -> str:
    try:
        return msgspec.json.encode(value).decode()
    except (TypeError, msgspec.EncodeError) as e:
        raise TypeError(f"a memory value must be JSON-serialisable: {e}") from e


class SessionClient:
    """Sessions, messages and memory. Built by ``GenAIPlatform().sessions``, or directly over a channel."""

    def __init__(
        self,
        channel: grpc.Channel,
        *,
        metadata: Sequence[tuple[str, str]] = (),
        timeout: float | None = None,
    ) -> None:
        self._stub = pb_grpc.SessionServiceStub(channel)
        # The gateway routes on x-target-service; the service itself ignores it.
        self.metadata: tuple[tuple[str, str], ...] = (("x-target-service", "sessions"), *metadata)
        self.timeout = timeout

    def _call(self, method: Any, request: Any) -> Any:
        try:
            return method(request, metadata=self.metadata, timeout=self.timeout)
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None

    # -- sessions ------------------------------------------------------------------------------------------

    def get_or_create(
        self, user_id: str, session_id: str | None = None, *, metadata: Mapping[str, Any] | None = None
    ) -> Session:
        """Resume the user's session ``session_id``, create it under that id, or create one with a new id."""
        request = pb.GetOrCreateSessionRequest(user_id=user_id, session_id=session_id or "")
        if metadata:
            request.metadata_json = _json(dict(metadata))
        reply: Session = self._call(self._stub.GetOrCreateSession, request)
        return reply

    def delete_session(self, session_id: str, *, reason: str | None = None) -> bool:
        """Delete a session with its messages and session memory; False when it was unknown or deleted."""
        request = pb.DeleteSessionRequest(session_id=session_id)
        if reason is not None:
            request.reason = reason
        reply: pb.DeleteSessionResponse = self._call(self._stub.DeleteSession, request)
        return reply.success

    def list_sessions(self, user_id: str, limit: int | None = None) -> list[pb.Session]:
        """The user's live sessions, most recently updated first: all of them, or the first ``limit``."""
        out: list[pb.Session] = []
        after: str | None = None
        while limit is None or len(out) < limit:
            request = pb.ListSessionsRequest(user_id=user_id)
            request.limit = min(1000, limit - len(out)) if limit is not None else 1000
            if after is not None:
                request.after = after
            reply: pb.ListSessionsResponse = self._call(self._stub.ListSessions, request)
            out.extend(reply.sessions)
            if not reply.HasField("next_cursor") or not reply.sessions:
                break
            after = reply.next_cursor
        return out

    # -- messages ------------------------------------------------------------------------------------------

    def add_messages(
        self,
        session_id: str,
        messages: Iterable[Mapping[str, Any]],
        *,
        idempotency_key: str | None = None,
        expected_version: int | None = None,
    ) -> int:
        """Append messages; returns how many were added (a retry with the same ``idempotency_key`` appends
        nothing and returns the same)."""
        request = pb.AddMessagesRequest(
            session_id=session_id, messages=[message_to_proto(m) for m in messages]
        )
        if idempotency_key is not None:
            request.idempotency_key = idempotency_key
        if expected_version is not None:
            request.expected_version = expected_version
        reply: pb.AddMessagesResponse = self._call(self._stub.AddMessages, request)
        return reply.message_count

    def get_messages(
        self,
        session_id: str,
        limit: int | None = None,
        offset: int | None = None,
        strategy: str | None = None,
        *,
        order: str | None = None,
        budget: int | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        """``(messages, total)``. No strategy: ``limit``/``offset`` in ``order`` (oldest first by default).
        ``strategy``: ``last_n``/``truncate`` (the newest ``limit``) or ``token_budget`` (the newest that fit
        ``budget`` tokens), never splitting a tool call from its results."""
        request = pb.GetMessagesRequest(session_id=session_id)
        if limit is not None:
            request.limit = limit
        if offset is not None:
            request.offset = offset
        if strategy:
            request.strategy = strategy
        if order is not None:
            request.order = order
        if budget is not None:
            request.budget = budget
        reply: pb.GetMessagesResponse = self._call(self._stub.GetMessages, request)
        return [message_to_dict(m) for m in reply.messages], reply.total_count

    # -- memory --------------------------------------------------------------------------------------------

    def save_memory(self, user_id: str, key: str, value: Any, session_id: str | None = None) -> bool:
        """Save a JSON-serialisable value under ``key``, for the user or for one of their sessions."""
        request = pb.SaveMemoryRequest(
            user_id=user_id, key=key, value=_json(value), session_id=session_id or ""
        )
        reply: pb.SaveMemoryResponse = self._call(self._stub.SaveMemory, request)
        return reply.success

    def get_memory(
        self, user_id: str, key: str | None = None, session_id: str | None = None, *, merged: bool = False
    ) -> dict[str, Any]:
        """``{key: value}`` of the user scope, or of ``session_id``'s scope (``merged``: both, the session's
        value winning); ``key``: only that one."""
        request = pb.GetMemoryRequest(user_id=user_id, merged=merged)
        if key:
            request.key = key
        if session_id:
            request.session_id = session_id
        reply: pb.GetMemoryResponse = self._call(self._stub.GetMemory, request)
        return {k: msgspec.json.decode(v) for k, v in reply.memories.items()}

    def delete_memory(self, user_id: str, key: str, session_id: str | None = None) -> bool:
        """False when the key did not exist."""
        request = pb.DeleteMemoryRequest(user_id=user_id, key=key, session_id=session_id or "")
        reply: pb.DeleteMemoryResponse = self._call(self._stub.DeleteMemory, request)
        return reply.success

    def clear_user_memory(self, user_id: str) -> int:
        """Remove every memory of the user, in every scope; returns how many keys went."""
        reply: pb.ClearUserMemoryResponse = self._call(
            self._stub.ClearUserMemory, pb.ClearUserMemoryRequest(user_id=user_id)
        )
        return reply.count

    # -- audit ---------------------------------------------------------------------------------------------

    def get_events(
        self,
        *,
        session_id: str | None = None,
        user_id: str | None = None,
        types: Sequence[str] = (),
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """The audit trail, oldest first: every event of a session, of a user, or of everything, with its
        envelope (who, when, which version) and its payload decoded."""
        out: list[dict[str, Any]] = []
        after: str | None = None
        while limit is None or len(out) < limit:
            request = pb.GetEventsRequest(types=list(types))
            if session_id:
                request.session_id = session_id
            if user_id:
                request.user_id = user_id
            request.limit = min(1000, limit - len(out)) if limit is not None else 1000
            if after is not None:
                request.after = after
            reply: pb.GetEventsResponse = self._call(self._stub.GetEvents, request)
            for e in reply.events:
                event = {
                    f.name: getattr(e, f.name)
                    for f in e.DESCRIPTOR.fields
                    if f.name != "payload_json" and (not f.has_presence or e.HasField(f.name))
                }
                event["payload"] = msgspec.json.decode(e.payload_json)
                out.append(event)
            if not reply.HasField("next_cursor") or not reply.events:
                break
            after = reply.next_cursor
        return out

"""Conversions between the gRPC messages (``proto.sessions_pb2``) and the core's types (the error mapping is
``service.errors.statuses_of``, shared with HTTP).

Kept apart from the servicer so both directions stay pure functions: a request message in, core arguments out
(raising ``BadRequest`` for bad input), a record in, a reply message out.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from events.schema import Message, epoch_ms
from projections.api import AuditRecord, SessionRecord
from proto import sessions_pb2 as pb
from proto.messages import message_to_proto
from service.errors import BadRequest

__all__ = [
    "audit_event",
    "decode_json",
    "encode_json",
    "epoch_ms",
    "from_epoch_ms",
    "message_from_proto",
    "message_to_proto",
    "optional_id",
    "required",
    "session_to_proto",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_encoder = msgspec.json.Encoder()


def from_epoch_ms(value: int, field: str = "timestamp") -> datetime:
    """Epoch milliseconds from the wire; an int64 can name a time no ``datetime`` holds: a refusal."""
    try:
        return _EPOCH + value * _MS
    except OverflowError as e:
        raise BadRequest(
            f"{field} is out of range: {value} ms since the epoch is not a date", code="invalid_timestamp"
        ) from e


def optional_id(message: Any, field: str) -> str | None:
    """An ``optional string`` id: absent and ``""`` both mean absent (the original SDK sends ``""``)."""
    if not message.HasField(field):
        return None
    value: str = getattr(message, field)
    return value or None


def required(value: str, field: str) -> str:
    if not value:
        raise BadRequest(f"{field} is required", code=f"missing_{field}")
    return value


def encode_json(value: Any) -> str:
    return _encoder.encode(value).decode()


def decode_json(text: str, field: str) -> Any:
    try:
        return msgspec.json.decode(text)
    except msgspec.DecodeError as e:
        raise BadRequest(f"{field} is not valid JSON text: {e}", code=f"invalid_{field}") from e
    except RecursionError as e:  # msgspec's answer to JSON nested deeper than the interpreter's stack
        raise BadRequest(f"{field} is nested too deeply", code=f"invalid_{field}") from e


def message_from_proto(m: pb.Message, index: int) -> Message:
    data: dict[str, Any] = {"role": m.role}
    if m.HasField("content"):
        data["content"] = m.content
    if m.HasField("name") and m.name:
        data["name"] = m.name
    if m.HasField("tool_call_id") and m.tool_call_id:
        data["tool_call_id"] = m.tool_call_id
    if m.tool_calls:
        data["tool_calls"] = [
            {
                "id": tc.id,
                "type": tc.type or "function",
                "function": {"name": tc.function.name, "arguments": tc.function.arguments},
            }
            for tc in m.tool_calls
        ]
    if m.timestamp:
        data["timestamp"] = m.timestamp
    try:
        return msgspec.convert(data, Message)
    except msgspec.ValidationError as e:
        raise BadRequest(f"messages[{index}]: {e}", code="invalid_message") from e


def session_to_proto(s: SessionRecord) -> pb.Session:
    return pb.Session(
        session_id=s.session_id,
        user_id=s.user_id,
        created_at=epoch_ms(s.created_at),
        updated_at=epoch_ms(s.updated_at),
        message_count=s.message_count,
        metadata_json=encode_json(s.metadata),
    )


def audit_event(e: AuditRecord) -> pb.AuditEvent:
    out = pb.AuditEvent(
        event_id=e.event_id,
        type=e.type,
        aggregate_kind=e.aggregate_kind,
        aggregate_id=e.aggregate_id,
        version=e.version,
        actor_kind=e.actor_kind,
        actor_id=e.actor_id,
        occurred_at=epoch_ms(e.occurred_at),
        recorded_at=epoch_ms(e.recorded_at),
        payload_json=encode_json(e.payload),
        partition=e.partition,
        position=e.position,
        tenant=e.tenant,
    )
    if e.user_id is not None:
        out.user_id = e.user_id
    if e.correlation_id is not None:
        out.correlation_id = e.correlation_id
    return out

"""A message as the wire's ``proto.Message``: one conversion for the server's replies (``service.grpc``)
and the client's requests (``genai_platform``). Hand-written beside the generated modules; it imports
nothing else."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from proto import sessions_pb2 as pb

__all__ = ["OPTIONAL_FIELDS", "message_to_proto"]

OPTIONAL_FIELDS = ("content", "tool_call_id", "name")


def message_to_proto(message: Mapping[str, Any] | object) -> Any:
    """A message (an OpenAI-style dict, or a record with the same attributes) as ``proto.Message``. Absent
    optional fields stay unset; a missing timestamp is 0 (the service stamps it); ``seq`` is sent when the
    message has one (a message read back)."""

    def get(field: str) -> Any:
        if isinstance(message, Mapping):
            return message.get(field)
        return getattr(message, field, None)

    out = pb.Message(
        role=str(get("role") or ""), timestamp=int(get("timestamp") or 0), seq=int(get("seq") or 0)
    )
    for field in OPTIONAL_FIELDS:
        if (value := get(field)) is not None:
            setattr(out, field, value)
    for call in get("tool_calls") or ():
        function = call.get("function") or {}
        out.tool_calls.append(
            pb.MessageToolCall(
                id=str(call.get("id") or ""),
                type=str(call.get("type") or "function"),
                function=pb.MessageFunction(
                    name=str(function.get("name") or ""), arguments=str(function.get("arguments") or "")
                ),
            )
        )
    return out

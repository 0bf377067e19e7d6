"""The generated modules are committed and current; the contract keeps the original's wire shape."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf.descriptor import FieldDescriptor

from proto import generate
from proto import sessions_pb2 as pb

T = FieldDescriptor


def test_the_committed_generated_modules_match_the_proto(tmp_path: Path) -> None:
    fresh = generate.generate(tmp_path)
    for path in fresh:
        committed = generate.PROTO_DIR / path.name
        assert committed.read_text() == path.read_text(), (
            f"proto/{path.name} is stale: run `python -m proto.generate` and commit the result"
        )


ORIGINAL: dict[str, list[tuple[str, int, int, bool, bool]]] = {
    # message: [(field, number, type, repeated, explicit presence)]
    "GetOrCreateSessionRequest": [
        ("user_id", 1, T.TYPE_STRING, False, False),
        ("session_id", 2, T.TYPE_STRING, False, True),
    ],
    "GetOrCreateSessionResponse": [
        ("session_id", 1, T.TYPE_STRING, False, False),
        ("user_id", 2, T.TYPE_STRING, False, False),
        ("created_at", 3, T.TYPE_INT64, False, False),
        ("updated_at", 4, T.TYPE_INT64, False, False),
    ],
    "AddMessagesRequest": [
        ("session_id", 1, T.TYPE_STRING, False, False),
        ("messages", 2, T.TYPE_MESSAGE, True, False),
    ],
    "AddMessagesResponse": [
        ("success", 1, T.TYPE_BOOL, False, False),
        ("message_count", 2, T.TYPE_INT32, False, False),
    ],
    "GetMessagesRequest": [
        ("session_id", 1, T.TYPE_STRING, False, False),
        ("limit", 2, T.TYPE_INT32, False, True),
        ("offset", 3, T.TYPE_INT32, False, True),
        ("strategy", 4, T.TYPE_STRING, False, True),
    ],
    "GetMessagesResponse": [
        ("messages", 1, T.TYPE_MESSAGE, True, False),
        ("total_count", 2, T.TYPE_INT32, False, False),
    ],
    "DeleteSessionRequest": [("session_id", 1, T.TYPE_STRING, False, False)],
    "DeleteSessionResponse": [("success", 1, T.TYPE_BOOL, False, False)],
    "SaveMemoryRequest": [
        ("user_id", 1, T.TYPE_STRING, False, False),
        ("key", 2, T.TYPE_STRING, False, False),
        ("value", 3, T.TYPE_STRING, False, False),
        ("session_id", 4, T.TYPE_STRING, False, True),
    ],
    "SaveMemoryResponse": [("success", 1, T.TYPE_BOOL, False, False)],
    "GetMemoryRequest": [
        ("user_id", 1, T.TYPE_STRING, False, False),
        ("key", 2, T.TYPE_STRING, False, True),
        ("session_id", 3, T.TYPE_STRING, False, True),
    ],
    "GetMemoryResponse": [("memories", 1, T.TYPE_MESSAGE, True, False)],
    "DeleteMemoryRequest": [
        ("user_id", 1, T.TYPE_STRING, False, False),
        ("key", 2, T.TYPE_STRING, False, False),
        ("session_id", 3, T.TYPE_STRING, False, True),
    ],
    "DeleteMemoryResponse": [("success", 1, T.TYPE_BOOL, False, False)],
    "ClearUserMemoryRequest": [("user_id", 1, T.TYPE_STRING, False, False)],
    "ClearUserMemoryResponse": [("count", 1, T.TYPE_INT32, False, False)],
    "Message": [
        ("role", 1, T.TYPE_STRING, False, False),
        ("content", 2, T.TYPE_STRING, False, True),
        ("tool_calls", 3, T.TYPE_MESSAGE, True, False),
        ("tool_call_id", 4, T.TYPE_STRING, False, True),
        ("name", 5, T.TYPE_STRING, False, True),
        ("timestamp", 6, T.TYPE_INT64, False, False),
    ],
    "MessageToolCall": [
        ("id", 1, T.TYPE_STRING, False, False),
        ("type", 2, T.TYPE_STRING, False, False),
        ("function", 3, T.TYPE_MESSAGE, False, True),
    ],
    "MessageFunction": [
        ("name", 1, T.TYPE_STRING, False, False),
        ("arguments", 2, T.TYPE_STRING, False, False),
    ],
}


@pytest.mark.parametrize("message", sorted(ORIGINAL))
def test_the_original_fields_keep_their_numbers_types_and_presence(message: str) -> None:
    descriptor = pb.DESCRIPTOR.message_types_by_name[message]
    assert descriptor.full_name == f"proto.{message}"
    for name, number, kind, repeated, presence in ORIGINAL[message]:
        field = descriptor.fields_by_name[name]
        assert (field.number, field.type) == (number, kind), name
        assert field.is_repeated == repeated, name
        assert field.has_presence == presence, name


def test_the_service_keeps_the_original_methods_and_adds_new_ones() -> None:
    service = pb.DESCRIPTOR.services_by_name["SessionService"]
    assert service.full_name == "proto.SessionService"
    methods = {m.name: (m.input_type.name, m.output_type.name) for m in service.methods}
    for rpc in (
        "GetOrCreateSession",
        "AddMessages",
        "GetMessages",
        "DeleteSession",
        "SaveMemory",
        "GetMemory",
        "DeleteMemory",
        "ClearUserMemory",
    ):
        assert methods[rpc] == (f"{rpc}Request", f"{rpc}Response")
    assert {"ListSessions", "GetEvents"} <= set(methods)
    assert all(not m.client_streaming and not m.server_streaming for m in service.methods)


def test_an_original_client_request_decodes_unchanged() -> None:
    # Bytes an original client sends (fields 1-2 of GetOrCreateSessionRequest, session_id ""), decoded here.
    wire = bytes([0x0A, 0x05]) + b"alice" + bytes([0x12, 0x00])
    request = pb.GetOrCreateSessionRequest.FromString(wire)
    assert request.user_id == "alice" and request.HasField("session_id") and request.session_id == ""

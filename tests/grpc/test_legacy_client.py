"""A client built from the ORIGINAL contract (the eight RPCs and their fields only, none of our additions)
talks to this service unchanged: the stubs are generated from that .proto into a temporary folder and run in
a subprocess, so they own the module name ``proto.sessions_pb2`` there, as in the original platform."""

from __future__ import annotations

import asyncio
import sys
import textwrap
from pathlib import Path

ORIGINAL_PROTO = """
syntax = "proto3";
package proto;

service SessionService {
  rpc GetOrCreateSession(GetOrCreateSessionRequest) returns (GetOrCreateSessionResponse);
  rpc AddMessages(AddMessagesRequest) returns (AddMessagesResponse);
  rpc GetMessages(GetMessagesRequest) returns (GetMessagesResponse);
  rpc DeleteSession(DeleteSessionRequest) returns (DeleteSessionResponse);
  rpc SaveMemory(SaveMemoryRequest) returns (SaveMemoryResponse);
  rpc GetMemory(GetMemoryRequest) returns (GetMemoryResponse);
  rpc DeleteMemory(DeleteMemoryRequest) returns (DeleteMemoryResponse);
  rpc ClearUserMemory(ClearUserMemoryRequest) returns (ClearUserMemoryResponse);
}

message MessageFunction { string name = 1; string arguments = 2; }
message MessageToolCall { string id = 1; string type = 2; MessageFunction function = 3; }
message Message {
  string role = 1; optional string content = 2; repeated MessageToolCall tool_calls = 3;
  optional string tool_call_id = 4; optional string name = 5; int64 timestamp = 6;
}
message GetOrCreateSessionRequest { string user_id = 1; optional string session_id = 2; }
message GetOrCreateSessionResponse {
  string session_id = 1; string user_id = 2; int64 created_at = 3; int64 updated_at = 4;
}
message AddMessagesRequest { string session_id = 1; repeated Message messages = 2; }
message AddMessagesResponse { bool success = 1; int32 message_count = 2; }
message GetMessagesRequest {
  string session_id = 1; optional int32 limit = 2; optional int32 offset = 3; optional string strategy = 4;
}
message GetMessagesResponse { repeated Message messages = 1; int32 total_count = 2; }
message DeleteSessionRequest { string session_id = 1; }
message DeleteSessionResponse { bool success = 1; }
message SaveMemoryRequest {
  string user_id = 1; string key = 2; string value = 3; optional string session_id = 4;
}
message SaveMemoryResponse { bool success = 1; }
message GetMemoryRequest { string user_id = 1; optional string key = 2; optional string session_id = 3; }
message GetMemoryResponse { map<string, string> memories = 1; }
message DeleteMemoryRequest { string user_id = 1; string key = 2; optional string session_id = 3; }
message DeleteMemoryResponse { bool success = 1; }
message ClearUserMemoryRequest { string user_id = 1; }
message ClearUserMemoryResponse { int32 count = 1; }
"""

CLIENT = """
import importlib.util, json, pathlib, sys
import grpc

# The editable install of this repository would win the name `proto`: bind it to the original's first.
here = pathlib.Path(__file__).parent / "proto"
spec = importlib.util.spec_from_file_location(
    "proto", here / "__init__.py", submodule_search_locations=[str(here)]
)
sys.modules["proto"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sys.modules["proto"])
from proto import sessions_pb2 as pb, sessions_pb2_grpc as pb_grpc

assert "ListSessionsRequest" not in pb.DESCRIPTOR.message_types_by_name  # the original contract, not ours
md = (("x-target-service", "sessions"),)  # as the original gateway forwards
with grpc.insecure_channel(sys.argv[1]) as channel:
    stub = pb_grpc.SessionServiceStub(channel)
    s = stub.GetOrCreateSession(pb.GetOrCreateSessionRequest(user_id="legacy", session_id=""), metadata=md)
    call = pb.MessageToolCall(id="c1", type="function", function=pb.MessageFunction(name="f", arguments="{}"))
    msgs = [
        pb.Message(role="user", content="hi", timestamp=1700000000000),
        pb.Message(role="assistant", tool_calls=[call], timestamp=1700000000001),
        pb.Message(role="tool", content="42", tool_call_id="c1", timestamp=1700000000002),
    ]
    added = stub.AddMessages(pb.AddMessagesRequest(session_id=s.session_id, messages=msgs), metadata=md)
    page = stub.GetMessages(pb.GetMessagesRequest(session_id=s.session_id, limit=2, offset=1), metadata=md)
    window = stub.GetMessages(pb.GetMessagesRequest(session_id=s.session_id, limit=2, strategy="truncate"))
    saved = pb.SaveMemoryRequest(user_id="legacy", key="k", value=json.dumps({"a": 1}), session_id="")
    stub.SaveMemory(saved)
    memory = stub.GetMemory(pb.GetMemoryRequest(user_id="legacy"), metadata=md)
    gone = stub.DeleteMemory(pb.DeleteMemoryRequest(user_id="legacy", key="nope", session_id=""))
    cleared = stub.ClearUserMemory(pb.ClearUserMemoryRequest(user_id="legacy"))
    deleted = stub.DeleteSession(pb.DeleteSessionRequest(session_id=s.session_id))
    try:
        stub.GetMessages(pb.GetMessagesRequest(session_id=s.session_id))
        status = "OK"
    except grpc.RpcError as e:
        status = e.code().name
    print(json.dumps({
        "session": bool(s.session_id) and s.user_id == "legacy" and s.created_at > 0,
        "added": [added.success, added.message_count],
        "page": [[m.role for m in page.messages], page.total_count, page.messages[1].tool_call_id],
        "timestamps": [m.timestamp for m in page.messages],
        "window": [m.role for m in window.messages],
        "memory": {k: json.loads(v) for k, v in memory.memories.items()},
        "gone": gone.success, "cleared": cleared.count, "deleted": deleted.success, "after": status,
    }))
"""


async def test_a_client_of_the_original_contract_works_unchanged(target: str, tmp_path: Path) -> None:
    import json

    from grpc_tools import protoc

    (tmp_path / "proto").mkdir()
    (tmp_path / "proto" / "__init__.py").write_text("")
    (tmp_path / "proto" / "sessions.proto").write_text(textwrap.dedent(ORIGINAL_PROTO))
    args = ["protoc", f"-I{tmp_path}", f"--python_out={tmp_path}", f"--grpc_python_out={tmp_path}"]
    assert protoc.main([*args, str(tmp_path / "proto" / "sessions.proto")]) == 0
    (tmp_path / "client.py").write_text(textwrap.dedent(CLIENT))

    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(tmp_path / "client.py"),
        target,
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    result = json.loads(out)
    assert result == {
        "session": True,
        "added": [True, 3],
        "page": [["assistant", "tool"], 3, "c1"],
        "timestamps": [1700000000001, 1700000000002],
        "window": ["assistant", "tool"],
        "memory": {"k": {"a": 1}},
        "gone": False,
        "cleared": 1,
        "deleted": True,
        "after": "NOT_FOUND",
    }

"""Hypothesis over the gRPC messages, through the real ``grpc.aio`` server in process (embedded, and on the
real Redis and PostgreSQL): arbitrary field values (odd unicode ids, empty strings, strings up to a megabyte,
negative limits and offsets, invalid JSON, unknown roles, dangling tool_call_ids, strategies and cursors that
mean nothing). Never INTERNAL or UNKNOWN, never a stack trace in the details, every refusal with its stable
code; the service healthy after, and a normal call still works."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st

from proto import sessions_pb2 as pb
from proto import sessions_pb2_grpc as pb_grpc
from service.grpc.servicer import create_grpc_server
from tests.fix_service import close_application, make_application

# A failing example may hold a megabyte string: its report is long, and that is not an error of the test.
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")

USER = "u-grpc"
# protobuf strings are UTF-8: no lone surrogates (the client library refuses them before sending).
text = st.text(st.characters(codec="utf-8"), max_size=30)
odd = st.one_of(
    text,
    st.sampled_from(["", " ", ":", "/", "a/b", "..", "\x00", "\x7f", "é", "🙂", "\u202e", "%2F", "null"]),
    st.sampled_from([257, 4_097, 70_000, 1_000_000]).map(lambda n: "x" * n),  # within the 4 MB message limit
)
int32 = st.integers(-(2**31), 2**31 - 1)
int64 = st.integers(-(2**63), 2**63 - 1)
json_text = st.one_of(odd, st.sampled_from(["{}", "[]", "1e999", '{"a":', "NaN", '"x"', "[" * 2000]))


class Server:
    """The application, a gRPC server over it and a stub, all on one asyncio loop kept for the whole test."""

    def __init__(self, backend: str, request: pytest.FixtureRequest) -> None:
        self.runner = asyncio.Runner()
        self.backend = backend
        self.app, self.log = self.run(make_application(backend, f"fuzz-{uuid.uuid4().hex[:8]}", request))
        self.server, port = create_grpc_server(self.app, "127.0.0.1:0")
        self.run(self.server.start())
        self.channel = grpc.aio.insecure_channel(
            f"127.0.0.1:{port}",
            options=[("grpc.max_send_message_length", 8 << 20), ("grpc.max_receive_message_length", 8 << 20)],
        )
        self.stub = pb_grpc.SessionServiceStub(self.channel)
        self.session = self.run(self._seed())

    def run(self, coro: Any) -> Any:
        return self.runner.run(coro)

    async def _seed(self) -> str:
        reply = await self.stub.GetOrCreateSession(pb.GetOrCreateSessionRequest(user_id=USER))
        call = pb.MessageToolCall(id="c1", type="function", function=pb.MessageFunction(name="f"))
        await self.stub.AddMessages(
            pb.AddMessagesRequest(
                session_id=reply.session_id, messages=[pb.Message(role="assistant", tool_calls=[call])]
            )
        )
        return str(reply.session_id)

    def close(self) -> None:
        async def go() -> None:
            await self.channel.close()
            await self.server.stop(None)
            await close_application(self.app, self.log, self.backend)

        self.run(go())
        self.runner.close()


@pytest.fixture(params=["embedded", "real"])
def served(request: pytest.FixtureRequest) -> Iterator[Server]:
    s = Server(request.param, request)
    yield s
    s.close()


def _ids(session: str) -> st.SearchStrategy[str]:
    return st.one_of(st.just(session), st.just(USER), odd)


def _message() -> st.SearchStrategy[pb.Message]:
    call = st.builds(
        pb.MessageToolCall,
        id=odd,
        type=st.sampled_from(["function", "", "tool"]),
        function=st.builds(pb.MessageFunction, name=odd, arguments=json_text),
    )
    return st.builds(
        pb.Message,
        role=st.sampled_from(["user", "assistant", "system", "tool", "", "robot", "USER"]) | odd,
        content=st.none() | odd,
        tool_calls=st.lists(call, max_size=3),
        tool_call_id=st.none() | st.sampled_from(["c1", "nope"]) | odd,
        name=st.none() | odd,
        timestamp=int64,
        seq=int64,
    )


def _requests(session: str) -> st.SearchStrategy[tuple[str, Any]]:
    ids, opt_ids = _ids(session), st.none() | _ids(session)
    opt_int = st.none() | int32
    return st.one_of(
        st.tuples(
            st.just("GetOrCreateSession"),
            st.builds(
                pb.GetOrCreateSessionRequest,
                user_id=ids,
                session_id=opt_ids,
                metadata_json=st.none() | json_text,
            ),
        ),
        st.tuples(
            st.just("AddMessages"),
            st.builds(
                pb.AddMessagesRequest,
                session_id=ids,
                messages=st.lists(_message(), max_size=4),
                expected_version=st.none() | int64,
                idempotency_key=st.none() | odd,
            ),
        ),
        st.tuples(
            st.just("GetMessages"),
            st.builds(
                pb.GetMessagesRequest,
                session_id=ids,
                limit=opt_int,
                offset=opt_int,
                strategy=st.none() | st.sampled_from(["last_n", "token_budget", "summary", ""]) | odd,
                order=st.none() | st.sampled_from(["asc", "desc", ""]) | odd,
                budget=opt_int,
                after=st.none() | odd,
            ),
        ),
        st.tuples(
            st.just("DeleteSession"),
            st.builds(pb.DeleteSessionRequest, session_id=odd, reason=st.none() | odd),
        ),
        st.tuples(
            st.just("SaveMemory"),
            st.builds(pb.SaveMemoryRequest, user_id=ids, key=odd, value=json_text, session_id=opt_ids),
        ),
        st.tuples(
            st.just("GetMemory"),
            st.builds(
                pb.GetMemoryRequest,
                user_id=ids,
                key=st.none() | odd,
                session_id=opt_ids,
                merged=st.booleans(),
            ),
        ),
        st.tuples(
            st.just("DeleteMemory"),
            st.builds(pb.DeleteMemoryRequest, user_id=ids, key=odd, session_id=opt_ids),
        ),
        st.tuples(st.just("ClearUserMemory"), st.builds(pb.ClearUserMemoryRequest, user_id=odd)),
        st.tuples(
            st.just("ListSessions"),
            st.builds(pb.ListSessionsRequest, user_id=ids, limit=opt_int, after=st.none() | odd),
        ),
        st.tuples(
            st.just("GetEvents"),
            st.builds(
                pb.GetEventsRequest,
                session_id=opt_ids,
                user_id=opt_ids,
                types=st.lists(odd, max_size=3),
                since=st.none() | int64,
                until=st.none() | int64,
                limit=opt_int,
                after=st.none() | odd,
            ),
        ),
    )


OUTCOMES: Counter[str] = Counter()


GRPC_MAX_MESSAGE = 4 << 20  # the server's receive limit (gRPC's default): larger ones gRPC itself refuses


async def _call(served: Server, name: str, request: Any) -> None:
    try:
        await getattr(served.stub, name)(request, timeout=30)
        OUTCOMES["OK"] += 1
    except grpc.aio.AioRpcError as e:
        status, details = e.code(), e.details() or ""
        OUTCOMES[status.name] += 1
        assert status not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), (name, details[:300])
        assert "Traceback" not in details and 'File "' not in details, details[:300]
        code = dict(e.trailing_metadata() or ()).get("error-code")
        assert code and details.startswith(f"{code}: "), (name, status, details[:300])


async def _still_works(served: Server) -> None:
    assert (await served.app.readiness()) is not None
    created = await served.stub.GetOrCreateSession(pb.GetOrCreateSessionRequest(user_id="after-fuzz"))
    added = await served.stub.AddMessages(
        pb.AddMessagesRequest(
            session_id=created.session_id, messages=[pb.Message(role="user", content="ok?")]
        )
    )
    assert added.success and added.total_messages == 1
    page = await served.stub.GetMessages(pb.GetMessagesRequest(session_id=created.session_id))
    assert [m.content for m in page.messages] == ["ok?"]


def test_arbitrary_requests_never_break_the_server(served: Server) -> None:
    # No shrinking: a failing example with megabyte strings takes many minutes to shrink, one call per step;
    # the example hypothesis reports unshrunk is enough to find the fault.
    @settings(
        max_examples=int(os.environ.get("FUZZ_EXAMPLES", "300")),
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.generate],
    )
    @given(call=_requests(served.session))
    def run(call: tuple[str, Any]) -> None:
        assume(call[1].ByteSize() < GRPC_MAX_MESSAGE)
        served.run(_call(served, *call))

    OUTCOMES.clear()
    run()
    assert OUTCOMES["OK"] > 0 and OUTCOMES["INVALID_ARGUMENT"] > 0, OUTCOMES
    print(sorted(OUTCOMES.items()))
    served.run(_still_works(served))

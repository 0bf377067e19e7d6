"""Helpers of the gRPC tests."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import grpc

from proto import sessions_pb2 as pb
from tests.service.helpers import CONVERSATION

__all__ = ["CONVERSATION", "expect_error", "proto_messages"]


def proto_messages(messages: list[dict[str, Any]]) -> list[pb.Message]:
    from genai_platform.sessions import message_to_proto

    return [message_to_proto(m) for m in messages]


async def expect_error(call: Awaitable[Any], status: grpc.StatusCode, code: str) -> grpc.aio.AioRpcError:
    """The call fails with that status, the stable code in the message and in the ``error-code`` trailer."""
    try:
        await call
    except grpc.aio.AioRpcError as e:
        assert e.code() == status, (e.code(), e.details())
        assert e.code() != grpc.StatusCode.INTERNAL
        assert e.details().startswith(f"{code}: "), e.details()
        assert "Traceback" not in e.details()
        assert dict(e.trailing_metadata() or ())["error-code"] == code
        return e
    raise AssertionError(f"expected {status.name} {code}, the call succeeded")

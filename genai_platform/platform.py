"""``GenAIPlatform``: the entry point of the original platform's SDK, for the Session Service.

    from genai_platform import GenAIPlatform
    platform = GenAIPlatform()                 # GENAI_GATEWAY_URL, else localhost:50052
    session = platform.sessions.get_or_create("user-123")

The address is the ``gateway_url`` argument, else ``GENAI_GATEWAY_URL`` (a gateway or this service: every
call carries ``x-target-service: sessions``, which a gateway routes on and the service ignores), else
``localhost:50052``. The channel opens on first use; ``close()`` (or ``with``) releases it.
"""

from __future__ import annotations

import os
from types import TracebackType

import grpc

from .sessions import SessionClient

__all__ = ["ADDRESS_ENV", "DEFAULT_ADDRESS", "GenAIPlatform"]

ADDRESS_ENV = "GENAI_GATEWAY_URL"
DEFAULT_ADDRESS = "localhost:50052"


class GenAIPlatform:
    def __init__(
        self,
        gateway_url: str | None = None,
        *,
        tenant: str | None = None,
        actor: str | None = None,
        timeout: float | None = 30.0,
        api_key: str | None = None,
    ) -> None:
        """``tenant`` and ``actor`` (``<kind>:<id>``) are sent with every call when given; ``timeout`` is
        each call's deadline in seconds; ``api_key`` (else ``SESSIONS_API_KEY``) goes in ``authorization``
        metadata as ``Bearer <key>``."""
        self.gateway_url = gateway_url or os.environ.get(ADDRESS_ENV) or DEFAULT_ADDRESS
        self.timeout = timeout
        self._metadata: list[tuple[str, str]] = []
        if tenant:
            self._metadata.append(("x-tenant-id", tenant))
        if actor:
            self._metadata.append(("x-actor", actor))
        if api_key := api_key or os.environ.get("SESSIONS_API_KEY"):
            self._metadata.append(("authorization", f"Bearer {api_key}"))
        self._channel: grpc.Channel | None = None
        self._sessions: SessionClient | None = None

    @property
    def channel(self) -> grpc.Channel:
        if self._channel is None:
            self._channel = grpc.insecure_channel(self.gateway_url)
        return self._channel

    @property
    def sessions(self) -> SessionClient:
        if self._sessions is None:
            self._sessions = SessionClient(self.channel, metadata=self._metadata, timeout=self.timeout)
        return self._sessions

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
        self._channel = None
        self._sessions = None

    def __enter__(self) -> GenAIPlatform:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

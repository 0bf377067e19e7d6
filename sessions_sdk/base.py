"""What both clients share: the headers every request carries (API key, tenant, actor), the positions of the
client's writes (read-your-writes), and reading a reply. No I/O here."""

from __future__ import annotations

import os
from typing import Any, TypeVar

import httpx
import msgspec

from events.positions import Positions, format_positions, merge_positions, parse_positions
from service.http.shapes import POSITION_HEADER

from .calls import Call
from .errors import raise_for_problem

__all__ = ["API_KEY_ENV", "DEFAULT_URL", "BaseClient"]

DEFAULT_URL = "http://127.0.0.1:8052"
API_KEY_ENV = "SESSIONS_API_KEY"  # the key a client sends when none is passed

T = TypeVar("T")


class BaseClient:
    """Request headers and the client's positions.

    ``positions`` holds, per partition, the latest position any of this client's writes reached (from each
    reply's ``X-Session-Position``); reads send it back, so the server waits until they are visible.
    """

    def __init__(self, tenant: str | None, actor: str | None, api_key: str | None = None) -> None:
        self.positions: Positions = {}
        self._headers: dict[str, str] = {}
        if api_key := api_key or os.environ.get(API_KEY_ENV):
            self._headers["Authorization"] = f"Bearer {api_key}"
        if tenant is not None:
            self._headers["X-Tenant-Id"] = tenant
        if actor is not None:
            self._headers["X-Actor"] = actor

    def _request_headers(self, call: Call[Any]) -> dict[str, str]:
        headers = {**self._headers, **call.headers}
        if call.read and self.positions:
            headers[POSITION_HEADER] = format_positions(self.positions)
        if call.body is not None:
            headers["Content-Type"] = "application/json"
        return headers

    def _reply(self, call: Call[T], response: httpx.Response) -> T:
        raise_for_problem(response)
        merge_positions(self.positions, parse_positions(response.headers.get(POSITION_HEADER)))
        return call.decode(response.content)

    @staticmethod
    def _content(call: Call[Any]) -> bytes | None:
        return None if call.body is None else msgspec.json.encode(call.body)

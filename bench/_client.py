"""The measured HTTP client of the API benchmarks: a minimal HTTP/1.1 keep-alive connection.

httpx costs more CPU per request than the server does, and on a small machine the client's CPU would be what
gets measured. A server may close an idle keep-alive connection (between levels, or after a number of
requests): the request is then sent again on a new connection, once.
"""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["RawConnection"]


class RawConnection:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, target: str, body: bytes = b"") -> int:
        """The response's status; the body is read and dropped."""
        head = f"{method} {target} HTTP/1.1\r\nHost: {self.host}\r\n"
        if body:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        payload = head.encode() + b"\r\n" + body
        for attempt in (1, 2):
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            assert self.reader is not None
            try:
                self.writer.write(payload)
                status_line = await self.reader.readline()
                if not status_line:  # closed by the server while idle
                    raise ConnectionResetError("the server closed the connection")
                length, close, chunked = 0, False, False
                while (line := await self.reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.partition(b":")
                    name = name.strip().lower()
                    if name == b"content-length":
                        length = int(value)
                    elif name == b"connection" and value.strip().lower() == b"close":
                        close = True
                    elif name == b"transfer-encoding" and b"chunked" in value.lower():
                        chunked = True
                if chunked:
                    while size := int((await self.reader.readline()).split(b";")[0], 16):
                        await self.reader.readexactly(size + 2)
                    await self.reader.readline()
                else:
                    await self.reader.readexactly(length)
                if close:
                    await self.close()
                return int(status_line.split()[1])
            except (ConnectionError, asyncio.IncompleteReadError):
                await self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def close(self) -> None:
        writer, self.reader, self.writer = self.writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

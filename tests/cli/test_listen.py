"""The socket ``sessions serve`` listens on: connections accepted from it get TCP_NODELAY, as uvicorn's own
would. With ``socket.create_server`` they did not (its proto is 0, and asyncio sets TCP_NODELAY only on a
TCP-proto socket): Nagle met the client's delayed ACK and every response waited about 40 ms."""

from __future__ import annotations

import asyncio
import socket

from service.cli.serve import listen


async def test_accepted_connections_get_tcp_nodelay() -> None:
    sock = listen("127.0.0.1", 0)
    seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server_side: socket.socket = writer.get_extra_info("socket")
        seen.set_result(server_side.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()

    server = await asyncio.start_server(accepted, sock=sock)
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", sock.getsockname()[1])
        try:
            assert await asyncio.wait_for(seen, 5) != 0
        finally:
            writer.close()
            await writer.wait_closed()
    finally:
        server.close()
        await server.wait_closed()

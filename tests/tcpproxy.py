"""A TCP forwarder on a loopback port in front of a live server, to fail the way networks
and proxies do: swallow one answer after the server acted on its request, cut open
WebSockets, hold new ones back, or refuse the WebSocket upgrade like a proxy that does
not support it. It records the first request line of each connection.

    proxy = await TcpProxy.start(live.server.url)
    ...
    await proxy.close()
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit

WS_PATH = "/api/v1/ws"
REFUSAL = b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


class TcpProxy:
    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.lines: list[str] = []  # the first request line of each connection, in order
        # The first connection whose request line starts with this gets its request
        # through, but its answer is swallowed and the connection cut.
        self.drop_answer_to: str | None = None
        self.refuse_websockets = False
        self.websockets_open = asyncio.Event()  # cleared: new WebSockets wait here
        self.websockets_open.set()
        self.held = 0  # WebSockets waiting on websockets_open
        self.sockets: list[tuple[asyncio.StreamWriter, bytearray]] = []  # (client, bytes sent)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @classmethod
    async def start(cls, upstream: str) -> TcpProxy:
        proxy = cls(upstream)
        proxy._server = await asyncio.start_server(proxy._handle, "127.0.0.1", 0)
        return proxy

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def websocket_lines(self) -> list[str]:
        return [line for line in self.lines if WS_PATH in line]

    def frames_arrived(self) -> bool:
        """A WebSocket is open and the server has sent past its handshake (the hello)."""
        for _, sent in self.sockets:
            end = sent.find(b"\r\n\r\n")
            if end != -1 and len(sent) > end + 4:
                return True
        return False

    def cut_websockets(self) -> None:
        """Abort every open WebSocket, as a dropped network would."""
        for client, _ in self.sockets:
            client.transport.abort()
        self.sockets.clear()

    async def close(self) -> None:
        self.cut_websockets()
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._forward(reader, writer)
        except (OSError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass  # closed by close(): end quietly (asyncio logs a handler that raises)
        finally:
            self._tasks.discard(task)
            writer.transport.abort()

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.read(65536)
        line = head.split(b"\r\n", 1)[0].decode(errors="replace")
        self.lines.append(line)
        websocket = WS_PATH in line
        if websocket and self.refuse_websockets:
            writer.write(REFUSAL)
            await writer.drain()
            return
        if websocket and not self.websockets_open.is_set():
            self.held += 1
            await self.websockets_open.wait()
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        try:
            up_writer.write(head)
            sent = bytearray()
            if websocket:
                self.sockets.append((writer, sent))
            drop = self.drop_answer_to is not None and line.startswith(self.drop_answer_to)
            if drop:
                self.drop_answer_to = None
            upstream = asyncio.create_task(_pipe(reader, up_writer, None))
            try:
                if drop:
                    await up_reader.read(1)  # the server answered: it did the work
                    return
                await _pipe(up_reader, writer, sent)
            finally:
                upstream.cancel()
                with contextlib.suppress(asyncio.CancelledError, OSError):
                    await upstream
        finally:
            up_writer.transport.abort()


async def _pipe(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, record: bytearray | None
) -> None:
    while chunk := await reader.read(65536):
        if record is not None:
            record.extend(chunk)
        writer.write(chunk)
        await writer.drain()

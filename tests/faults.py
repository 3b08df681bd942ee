"""A TCP proxy in front of the real Label Studio that injects faults.

Modes: ``pass`` (forward), ``hang`` (accept, never answer), ``reset`` (close at once),
``lose_response`` (forward the request, then drop the answer and close: the server did
the work but the client never learns it), ``error500`` (answer 500 without forwarding),
``slow`` (every request waits ``delay`` seconds). ``stop()`` closes the port (refused).
"""

from __future__ import annotations

import asyncio
import socket
import threading


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FaultProxy:
    def __init__(self, target_port: int, port: int | None = None) -> None:
        self.target_port = target_port
        self.port = port or free_port()
        self.mode = "pass"
        self.delay = 0.0
        self.faults = 0  # requests the proxy interfered with
        self.faults_by_mode: dict[str, int] = {}
        self._open: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.AbstractServer | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        async def _start() -> None:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)

        asyncio.run_coroutine_threadsafe(_start(), self._loop).result(5)
        return self

    def stop(self) -> None:
        async def _stop() -> None:
            for writer in list(self._open):  # kept-alive connections go too
                writer.close()
            if self._server is not None:
                self._server.close()
                await self._server.wait_closed()
                self._server = None

        asyncio.run_coroutine_threadsafe(_stop(), self._loop).result(5)

    def close(self) -> None:
        self.stop()

        async def _cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(_cancel_all(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)

    def set_mode(self, mode: str) -> None:
        """Switch modes and drop open (kept-alive) connections so the next request sees it."""
        self.mode = mode

        async def _drop() -> None:
            for writer in list(self._open):
                writer.close()

        asyncio.run_coroutine_threadsafe(_drop(), self._loop).result(5)

    def _count(self, mode: str) -> None:
        self.faults += 1
        self.faults_by_mode[mode] = self.faults_by_mode.get(mode, 0) + 1

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        mode = self.mode
        self._open.add(writer)
        try:
            if mode == "reset":
                self._count(mode)
                return
            if mode == "hang":
                self._count(mode)
                await asyncio.sleep(3600)
                return
            if mode == "error500":
                self._count(mode)
                await reader.read(65536)
                body = b'{"detail": "injected failure"}'
                writer.write(
                    b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
                )
                await writer.drain()
                return
            if mode == "slow":
                self._count(mode)
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
            if mode == "lose_response":
                self._count(mode)
                await self._lose_response(reader, up_reader, up_writer)
                return
            await asyncio.gather(self._pipe(reader, up_writer, slow=mode == "slow"), self._pipe(up_reader, writer))
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._open.discard(writer)
            writer.close()

    async def _lose_response(
        self, reader: asyncio.StreamReader, up_reader: asyncio.StreamReader, up_writer: asyncio.StreamWriter
    ) -> None:
        """Forward one request whole, wait for the server's answer, and drop it."""
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        body = await reader.readexactly(length) if length else b""
        up_writer.write(head + body)
        await up_writer.drain()
        await up_reader.read(1)  # the server has answered: the work is done
        up_writer.close()

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, slow: bool = False) -> None:
        try:
            while data := await src.read(65536):
                if slow and self.mode == "slow":
                    await asyncio.sleep(self.delay)
                dst.write(data)
                await dst.drain()
        finally:
            dst.close()

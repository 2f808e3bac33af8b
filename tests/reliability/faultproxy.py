"""A small asyncio TCP fault proxy (toxiproxy and ``tc netem`` are not available here).

It listens on 127.0.0.1 (a free port) and forwards every connection to one upstream. Faults
are switched at run time, from the event loop that runs the proxy:

* pass-through (the default);
* ``latency``: seconds added before each chunk is forwarded, both ways;
* ``bandwidth``: bytes per second per direction and connection (``None``: unlimited);
* :meth:`FaultProxy.reset`: cut every current connection with a TCP reset (RST);
* :meth:`FaultProxy.refuse`: stop listening, so new connections are refused (ECONNREFUSED);
  :meth:`FaultProxy.restore` listens again on the same port;
* :meth:`FaultProxy.blackhole`: accept connections but forward nothing, either way (a
  server that is up but whose packets are lost); current connections go silent too.

Bounded: at most ``max_connections`` links at once (more are reset); :meth:`FaultProxy.close`
(or leaving ``async with``) stops listening, resets every link and awaits its tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from types import TracebackType

CHUNK = 65_536


class _Link:
    """One client connection and its upstream connection (None while blackholed)."""

    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream: asyncio.StreamWriter | None = None
        self.pumps: list[asyncio.Task[None]] = []

    def reset(self) -> None:
        for writer in (self.client, self.upstream):
            if writer is not None:
                _abort(writer)
        for task in self.pumps:
            task.cancel()

    def close(self) -> None:
        """End both sides gracefully (FIN after what was already forwarded)."""
        for writer in (self.client, self.upstream):
            if writer is not None:
                writer.close()
        for task in self.pumps:
            task.cancel()


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0) rather than a graceful FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class FaultProxy:
    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        max_connections: int = 256,
        connect_timeout: float = 5.0,
    ) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.host = "127.0.0.1"
        self.port = 0  # chosen when started
        self.latency = 0.0
        self.bandwidth: int | None = None
        self.accepted = 0  # connections accepted so far
        self._max = max_connections
        self._connect_timeout = connect_timeout
        self._blackholed = False
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._serving: set[asyncio.Task[None]] = set()  # one per accepted connection

    @property
    def connections(self) -> int:
        """Links open now."""
        return len(self._links)

    async def start(self) -> FaultProxy:
        await self._listen()
        return self

    async def __aenter__(self) -> FaultProxy:
        return await self.start()

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, self.host, self.port, reuse_address=True, backlog=64
        )
        self.port = int(self._server.sockets[0].getsockname()[1])

    # -- faults ---------------------------------------------------------------------------

    def pass_through(self) -> None:
        """Forward again (new connections; links that were blackholed stay broken, as the
        bytes they lost are gone) and drop latency and bandwidth limits."""
        self._blackholed = False
        self.latency = 0.0
        self.bandwidth = None

    def blackhole(self) -> None:
        self._blackholed = True

    def reset(self) -> int:
        """Cut every current connection with a reset; returns how many were cut."""
        links, self._links = self._links, set()
        for link in links:
            link.reset()
        return len(links)

    async def refuse(self) -> None:
        """Stop listening: connecting is refused until :meth:`restore`."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def restore(self) -> None:
        """Listen again on the same port and forward (every fault is cleared)."""
        self.pass_through()
        if self._server is None:
            await self._listen()

    async def close(self) -> None:
        await self.refuse()
        self.reset()
        tasks = list(self._serving)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- forwarding -----------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._links) >= self._max:
            _abort(writer)
            return
        self.accepted += 1
        link = _Link(writer)
        self._links.add(link)
        task = asyncio.current_task()
        assert task is not None
        self._serving.add(task)
        try:
            if self._blackholed:
                await self._swallow(reader)
                return
            try:
                up_reader, link.upstream = await asyncio.wait_for(
                    asyncio.open_connection(*self.upstream), self._connect_timeout
                )
            except (OSError, TimeoutError):
                link.reset()  # upstream down: the client sees its connection reset
                return
            pumps = [
                asyncio.create_task(self._pump(reader, link.upstream)),
                asyncio.create_task(self._pump(up_reader, writer)),
            ]
            link.pumps.extend(pumps)
            # When one side ends, end the other (half-open links are not worth modelling).
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._links.discard(link)
            self._serving.discard(task)
            link.close()

    async def _swallow(self, reader: asyncio.StreamReader) -> None:
        while await reader.read(CHUNK):
            pass

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(CHUNK):
                if self._blackholed:
                    continue
                if self.latency:
                    await asyncio.sleep(self.latency)
                if self.bandwidth:
                    await asyncio.sleep(len(data) / self.bandwidth)
                if self._blackholed:  # switched while this chunk waited
                    continue
                writer.write(data)
                await writer.drain()

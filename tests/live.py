"""A real server for streaming tests, and a Server-Sent Events reader.

httpx's ASGI transport returns a response only once the app has finished it, so a stream
that never ends cannot be read through it: these tests run the app under uvicorn on
127.0.0.1 (a free port), in a thread with its own event loop, and talk to it over TCP.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from typing import Any

import httpx
import orjson
import uvicorn

from teamboard.app import create_app
from teamboard.config import Settings


@contextmanager
def served_in_thread(server: ThreadingHTTPServer) -> Iterator[int]:
    """Serve ``server`` (bound on 127.0.0.1) from a thread; yields its port, shuts it down
    on the way out."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveServer:
    """``create_app(settings)`` served by uvicorn in a thread; ``stop`` ends the streams
    (as SIGTERM does) and shuts the server down."""

    def __init__(self, settings: Settings) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = create_app(settings)
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="on",
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(self._server.serve())
        self._loop.close()

    async def start(self) -> LiveServer:
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the live server did not start")
            await asyncio.sleep(0.02)
        return self

    async def stop(self) -> None:
        if self._loop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self.app.state.realtime.close_streams)
        self._server.should_exit = True
        await asyncio.to_thread(self._thread.join, 20)
        assert not self._thread.is_alive(), "the live server did not stop"


@asynccontextmanager
async def live_server(settings: Settings) -> AsyncIterator[LiveServer]:
    server = await LiveServer(settings).start()
    try:
        yield server
    finally:
        await server.stop()


@dataclass
class Frame:
    """One SSE message: an event (``data`` parsed as JSON), or a comment (``event`` is then
    ``comment``: heartbeats)."""

    id: str | None = None
    event: str = "message"
    data: Any = None
    comment: str | None = None
    received: float = field(default_factory=time.monotonic)


class Stream:
    """An open SSE response, read frame by frame."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()
        self.last_id: str | None = None
        self.closed = False

    async def next(self, within: float = 10.0) -> Frame | None:
        """The next frame, or None once the server closed the stream."""
        frame, data = Frame(), []
        async with asyncio.timeout(within):
            async for line in self._lines:
                if line == "":
                    if data or frame.comment is not None or frame.id is not None:
                        frame.data = orjson.loads("\n".join(data)) if data else None
                        if not data and frame.comment is not None:
                            frame.event = "comment"
                        frame.received = time.monotonic()
                        if frame.id is not None:
                            self.last_id = frame.id
                        return frame
                    continue
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "":
                    frame.comment = value
                elif name == "id":
                    frame.id = value
                elif name == "event":
                    frame.event = value
                elif name == "data":
                    data.append(value)
        self.closed = True
        return None

    async def events(self, count: int, within: float = 20.0) -> list[Frame]:
        """The next ``count`` event frames (heartbeats and control frames skipped)."""
        found: list[Frame] = []
        async with asyncio.timeout(within):
            while len(found) < count:
                frame = await self.next(within)
                if frame is None:
                    raise AssertionError(f"the stream ended after {len(found)} of {count}")
                if frame.event == "message":
                    found.append(frame)
        return found

    async def until_closed(self, within: float = 20.0) -> list[Frame]:
        """Every frame until the server closes the stream (which it must, in time)."""
        frames: list[Frame] = []
        async with asyncio.timeout(within):
            while (frame := await self.next(within)) is not None:
                frames.append(frame)
        return frames

    async def quiet(self, seconds: float) -> list[Frame]:
        """Every frame that arrives within ``seconds`` (until the stream ends)."""
        frames: list[Frame] = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                frame = await self.next(left)
            except TimeoutError:
                break
            if frame is None:
                break
            frames.append(frame)
        return frames


@asynccontextmanager
async def subscribe(
    client: httpx.AsyncClient,
    team: Any,
    headers: dict[str, str],
    last_event_id: str | None = None,
) -> AsyncIterator[Stream]:
    """Open the team's stream; the first frame (``ready``) is read already."""
    extra = {} if last_event_id is None else {"Last-Event-ID": last_event_id}
    async with client.stream(
        "GET", f"/api/v1/teams/{team}/events/stream", headers={**headers, **extra}
    ) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        stream = Stream(response)
        ready = await stream.next()
        assert ready is not None
        assert ready.event == "ready", ready
        yield stream

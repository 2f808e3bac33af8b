"""Admission at the edge: at most ``limit`` requests of a process inside the app at once.

With far more connections than database connections (1,024 clients, 16 connections per
process), most requests can only wait. Without a gate, each of them first goes through
routing, token verification, rate limiting and the middleware stack, then waits for the
pool holding everything it built: the garbage collector scans those objects again and
again, and the process serves fewer requests per second than under a moderate load. The
gate makes the excess wait *before* any of that, in arrival order. It sits just inside the
request-id and throttling edge, so that a refusal is logged and a throttled caller never
queues. A request that could not get in within ``wait_seconds`` is answered ``503
overloaded`` (problem+json, ``Retry-After``) having done nothing.

Not gated: the health probes (they must answer while the app is saturated) and the
exchanges whose length the client sets: the realtime stream (hours), attachment downloads
and uploads (a slow link). The database pool still bounds what those do at once.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from teamboard.errors import problem_response

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

HEALTH_PREFIX = "/health/"
#: Long-lived exchanges, paced by the client: the realtime stream and attachment downloads
#: (streamed), attachment uploads (read as they arrive). Slow clients would hold places.
_STREAMED_GETS = re.compile(r"/events/stream$|/attachments/[^/]+/content$")
_UPLOADS = re.compile(r"/tasks/[^/]+/attachments$")


def is_exempt(method: str, path: str) -> bool:
    """Requests that never wait at the gate: health probes and long-lived exchanges."""
    if path.startswith(HEALTH_PREFIX):
        return True
    if method == "GET":
        return _STREAMED_GETS.search(path) is not None
    return method == "POST" and _UPLOADS.search(path) is not None


class AdmissionMiddleware:
    """Pure ASGI: a FIFO semaphore of ``limit`` places around the app for HTTP requests."""

    def __init__(self, app: App, *, limit: int, wait_seconds: float) -> None:
        self.app = app
        self.wait_seconds = wait_seconds
        self._places = asyncio.Semaphore(limit)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_exempt(scope["method"], scope["path"]):
            await self.app(scope, receive, send)
            return
        if self._places.locked():
            try:
                await asyncio.wait_for(self._places.acquire(), self.wait_seconds)
            except TimeoutError:
                await self._refuse(scope, receive, send)
                return
        else:
            await self._places.acquire()  # a free place: taken without suspending
        try:
            await self.app(scope, receive, send)
        finally:
            self._places.release()

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        retry_after = str(max(1, math.ceil(self.wait_seconds)))
        response = problem_response(
            503,
            "overloaded",
            "The server is at capacity; retry later",
            instance=scope["path"],
            headers={"Retry-After": retry_after},
        )
        await response(scope, receive, send)

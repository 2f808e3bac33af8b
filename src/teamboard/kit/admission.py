"""Admission at the edge: at most ``limit`` requests of a process inside the app at once.

With far more connections than database connections (1,024 clients, 16 connections per
process), most requests can only wait. Without a gate, each of them first goes through
routing, token verification, rate limiting and the middleware stack, then waits for the
pool holding everything it built. The gate makes the excess wait *before* any of that, in
arrival order. A request that could not get in within ``wait_seconds`` is answered ``503
overloaded`` (problem+json, ``Retry-After``) having done nothing, and one whose client left
while it waited is dropped unrun (logged 499): under overload, clients give up.

The gate wraps the whole application (``teamboard.app.create_server_app``), outside the
framework and every middleware: a request waits holding only its connection's state, not
a frame of each layer. Measured at 1,024 connections (bench/README.md, eighteenth session),
the same requests cost the server less CPU that way than with the gate inside the stack.
Two things the layers inside used to give every waiting request are kept:

* its own answers (a refusal, a dropped request) go through ``edge``, the request-logging
  middleware, so they are logged and carry a request id like any other; the access log's
  duration counts the wait (the arrival time is left in the scope's state);
* ``goes_first`` names requests that skip the line because the app answers them at once
  without work: a credential that is being refused 429 (``teamboard.kit.throttled``) never
  queues behind the callers it would delay.

What the stack inside no longer sees: FastAPI's OpenTelemetry instrumentation (when
enabled) measures from the moment a request gets in, and the gate's own refusals are only
in the access log.

Not gated: the health probes (they must answer while the app is saturated) and the
exchanges whose length the client sets: the realtime stream (hours), attachment downloads
and uploads (a slow link). The database pool still bounds what those do at once.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from teamboard.errors import problem_response
from teamboard.logging import ARRIVED

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


class Places:
    """``limit`` places taken in arrival order, each wait bounded by ``wait_seconds``.

    Under a flood most requests of a process wait here (512 per process at 1,024
    connections), so a wait costs one future: a freed place goes straight to the oldest
    waiter, and one timer, set for the oldest waiter's deadline, turns away those who
    waited too long (``asyncio.wait_for`` on a semaphore gives every waiter a task and a
    timer of its own). Bound to the event loop that first waits on it.
    """

    def __init__(self, limit: int, wait_seconds: float) -> None:
        self._free = limit
        self._wait_seconds = wait_seconds
        self._queue: deque[tuple[float, asyncio.Future[bool]]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def take(self) -> bool:
        """Take a place at once if one is free and nobody is waiting (no suspension)."""
        if self._free and not self._queue:
            self._free -= 1
            return True
        return False

    async def wait(self) -> bool:
        """Wait in line: True once a place is the caller's, False when the wait ran out."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            if self._loop is not None:  # its waiters' futures and its timer belong to it
                raise RuntimeError("the admission gate is bound to another event loop")
            self._loop = loop
        deadline = loop.time() + self._wait_seconds
        turn: asyncio.Future[bool] = loop.create_future()
        self._queue.append((deadline, turn))
        if self._timer is None:
            self._timer = loop.call_at(deadline, self._turn_away)
        try:
            return await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled() and turn.result():
                self.give_back()  # handed a place while being cancelled: pass it on
            raise

    def give_back(self) -> None:
        """Free a place: to the oldest waiter still waiting, else to the pool of places."""
        queue = self._queue
        while queue:
            turn = queue.popleft()[1]
            if not turn.done():  # a cancelled waiter's turn is skipped
                turn.set_result(True)
                return
        self._free += 1

    def _turn_away(self) -> None:
        """Answer False to every waiter past its deadline; set the timer for the next."""
        loop = asyncio.get_running_loop()
        now, queue = loop.time(), self._queue
        while queue and queue[0][0] <= now:
            turn = queue.popleft()[1]
            if not turn.done():
                turn.set_result(False)
        self._timer = loop.call_at(queue[0][0], self._turn_away) if queue else None


class AdmissionMiddleware:
    """Pure ASGI: :class:`Places` of ``limit`` around the app for HTTP requests.

    ``edge`` wraps the gate's own answers (by default they are not wrapped);
    ``goes_first(scope)`` says whether a request may skip the line (by default none may).
    """

    def __init__(
        self,
        app: App,
        *,
        limit: int,
        wait_seconds: float,
        edge: Callable[[App], App] | None = None,
        goes_first: Callable[[Scope], bool] | None = None,
    ) -> None:
        self.app = app
        self.wait_seconds = wait_seconds
        self._places = Places(limit, wait_seconds)
        self._goes_first = goes_first
        wrap = edge or (lambda answer: answer)
        self._refuse = wrap(self._overloaded)
        self._drop = wrap(_unanswered)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_exempt(scope["method"], scope["path"]):
            await self.app(scope, receive, send)
            return
        places = self._places
        if not places.take():
            if self._goes_first is not None and self._goes_first(scope):
                await self.app(scope, receive, send)
                return
            scope.setdefault("state", {})[ARRIVED] = time.perf_counter()
            if not await places.wait():
                await self._refuse(scope, receive, send)
                return
            if _declares_no_body(scope):
                try:
                    admitted = await _unless_gone(receive)
                except BaseException:
                    places.give_back()
                    raise
                if admitted is None:  # nobody to answer: the place goes to the next in line
                    places.give_back()
                    await self._drop(scope, receive, send)
                    return
                receive = admitted
        try:
            await self.app(scope, receive, send)
        finally:
            places.give_back()

    async def _overloaded(self, scope: Scope, receive: Receive, send: Send) -> None:
        retry_after = str(max(1, math.ceil(self.wait_seconds)))
        response = problem_response(
            503,
            "overloaded",
            "The server is at capacity; retry later",
            instance=scope["path"],
            headers={"Retry-After": retry_after},
        )
        await response(scope, receive, send)


async def _unanswered(scope: Scope, receive: Receive, send: Send) -> None:
    """A request whose client has gone: nothing is sent (the log says 499)."""


def _declares_no_body(scope: Scope) -> bool:
    """No ``Content-Length`` above 0 and no ``Transfer-Encoding``: the request's first
    message is already in, so reading it neither waits for the client nor answers an
    ``Expect: 100-continue`` (the body limit refuses such a body before that)."""
    for name, value in scope["headers"]:
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0"):
            return False
    return True


async def _unless_gone(receive: Receive) -> Receive | None:
    """After a wait at the gate: None when the client has gone meanwhile, else a
    ``receive`` that hands the app the request's first message again.

    Under overload, clients give up and close their connections (a load generator's
    warm-up ends with a full queue behind it): without this check each of their requests
    would still run its statements and render a response nobody reads, while the requests
    of connected clients waited behind them. The server reports the disconnect as the next
    message (ASGI ``http.disconnect``). Only requests that waited and declare no body pay
    for the check (see :func:`_declares_no_body`)."""
    first = await receive()
    if first["type"] == "http.disconnect":
        return None
    replayed = False

    async def receive_again() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return first

    return receive_again

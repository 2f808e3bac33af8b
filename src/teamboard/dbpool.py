"""A small pool of asyncpg connections for the request path.

Why not asyncpg's own ``Pool``: its ``release`` goes through ``asyncio.shield`` (a new Task
per release) and a reset coroutine, and a bounded ``acquire`` through a timeout context;
py-spy put the two at about a third of the CPU of a one-row tenant read (bench/README.md).
This pool needs neither: the request context is transaction-local, so a connection comes
back clean once its transaction has ended, and :meth:`ConnectionPool.release` is a plain
function.

Contract:

* at most ``max_size`` connections exist (idle, lent, or being opened);
* ``acquire`` returns the most recently used idle connection (warm caches), else opens one,
  else waits in FIFO order at most ``acquire_timeout`` seconds, then raises
  :class:`PoolTimeout`;
* ``release(conn, reusable=False)`` terminates the connection; the caller must say
  ``reusable=False`` whenever an operation on it was interrupted (cancelled, or failed
  outside PostgreSQL), since asyncpg may still be mid-protocol. A connection in a
  transaction, closed, or idle longer than ``max_idle_seconds`` is never handed out.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias

import asyncpg
from asyncpg import Record

Connection: TypeAlias = "asyncpg.Connection[Record]"
Waiter: TypeAlias = "asyncio.Future[Connection | None]"  # None: a slot freed, open one


class PoolTimeout(Exception):
    """No connection became free within the acquire timeout (answered 503)."""


class PoolClosed(Exception):
    """The pool was closed (the process is shutting down)."""


class ConnectionPool:
    def __init__(
        self,
        connect: Callable[[], Awaitable[Connection]],
        *,
        max_size: int,
        acquire_timeout: float,
        max_idle_seconds: float = 300.0,
    ) -> None:
        self._connect = connect
        self._max_size = max_size
        self._timeout = acquire_timeout
        self._max_idle = max_idle_seconds
        self._idle: list[tuple[Connection, float]] = []
        self._open = 0  # counted against max_size: idle, lent, or being opened
        self._waiters: deque[Waiter] = deque()
        self._closed = False

    @property
    def size(self) -> int:
        """Connections that exist now (idle, lent or being opened)."""
        return self._open

    async def warm(self, count: int) -> None:
        """Open up to ``count`` connections ahead of traffic."""
        connections = [await self.acquire() for _ in range(min(count, self._max_size))]
        for conn in connections:
            self.release(conn)

    async def acquire(self) -> Connection:
        if self._closed:
            raise PoolClosed("the connection pool is closed")
        now = time.monotonic()
        while self._idle:
            conn, since = self._idle.pop()
            if conn.is_closed() or now - since > self._max_idle:
                self._discard(conn)
                continue
            return conn
        if self._open < self._max_size:
            return await self._open_connection()
        handed = await self._wait()
        return handed if handed is not None else await self._open_connection()

    def release(self, conn: Connection, *, reusable: bool = True) -> None:
        if self._closed or not reusable or conn.is_closed() or conn.is_in_transaction():
            self._discard(conn)
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        self._idle.append((conn, time.monotonic()))

    async def close(self, grace_seconds: float = 5.0) -> None:
        """Close idle connections gracefully; lent ones are terminated when released."""
        self._closed = True
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(PoolClosed("the connection pool is closed"))
        idle, self._idle = self._idle, []
        for conn, _ in idle:
            self._open -= 1
            try:
                await conn.close(timeout=grace_seconds)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
                conn.terminate()

    async def _open_connection(self) -> Connection:
        self._open += 1
        try:
            return await self._connect()
        except BaseException:
            self._open -= 1
            self._offer_slot()
            raise

    async def _wait(self) -> Connection | None:
        loop = asyncio.get_running_loop()
        waiter: Waiter = loop.create_future()
        self._waiters.append(waiter)
        timer = loop.call_at(loop.time() + self._timeout, _expire, waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            # Cancelled after a connection (or a slot) was handed over: pass it on.
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                handed = waiter.result()
                if handed is None:
                    self._offer_slot()
                else:
                    self.release(handed)
            raise
        finally:
            timer.cancel()

    def _discard(self, conn: Connection) -> None:
        self._open -= 1
        conn.terminate()
        self._offer_slot()

    def _offer_slot(self) -> None:
        """A connection stopped counting: let the first waiter open a new one."""
        while self._waiters and not self._closed:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return


def _expire(waiter: asyncio.Future[Any]) -> None:
    if not waiter.done():
        waiter.set_exception(PoolTimeout("no database connection became free in time"))

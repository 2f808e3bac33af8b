"""Wake-up signals for readers of the event log: "team T has new events", nothing more.

Every event insert sends ``NOTIFY tb_event, '<team_id>'`` (a trigger, see the events
migration); PostgreSQL delivers it at commit, once per team and transaction. A signal is
only a hint to read now rather than at the next poll: readers always read the log itself
from their own offset, so a lost, duplicated or late signal costs latency, never an event.
When a listener (re)connects it wakes everyone (``None``), since signals sent while it was
away are lost.

* :class:`PostgresSignals`: ``LISTEN`` on a dedicated connection (a pooled one would be
  handed to requests; LISTEN does not work through PgBouncer in transaction mode either).
* :class:`RedisSignals`: a Redis pub/sub subscription, fed by :class:`RedisRelay` (run by
  ``teamboard worker``), so that API instances need no LISTEN connection of their own.

This module opens its own asyncpg connection (infrastructure, like ``teamboard.dbpool``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import suppress
from typing import Any, Protocol

import asyncpg
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from teamboard.db import DATABASE_UNAVAILABLE, connect_arguments

logger = logging.getLogger("teamboard.events.signals")

CHANNEL = "tb_event"
REDIS_CHANNEL = "tb:event"
#: Called with a team id (text), or None for "anything may have changed".
Wake = Callable[[str | None], None]
_HEALTH_SECONDS = 30.0
_LISTENER_LOST: tuple[type[Exception], ...] = (
    *DATABASE_UNAVAILABLE,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
)
_MAX_BACKOFF_SECONDS = 10.0


class Signals(Protocol):
    async def run(self, stop: asyncio.Event) -> None:
        """Deliver signals to the wake callback until ``stop`` is set; reconnects forever."""
        ...


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    with suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


class PostgresSignals:
    def __init__(self, url: str, wake: Wake) -> None:
        self._arguments = connect_arguments(url)
        self._wake = wake
        self.connected = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        backoff = 0.1
        while not stop.is_set():
            try:
                await self._listen(stop)
                backoff = 0.1
            except _LISTENER_LOST as exc:
                logger.warning("event signals: listener lost (%s); reconnecting", exc)
            self.connected.clear()
            await _pause(stop, backoff)
            backoff = min(backoff * 2, _MAX_BACKOFF_SECONDS)

    async def _listen(self, stop: asyncio.Event) -> None:
        conn = await asyncpg.connect(**self._arguments)
        lost = asyncio.Event()

        def on_notify(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
            self._wake(payload)

        try:
            conn.add_termination_listener(lambda _conn: lost.set())
            await conn.add_listener(CHANNEL, on_notify)
            self.connected.set()
            self._wake(None)
            while not stop.is_set() and not lost.is_set():
                waiters = [asyncio.ensure_future(e.wait()) for e in (stop, lost)]
                try:
                    await asyncio.wait(
                        waiters, timeout=_HEALTH_SECONDS, return_when=asyncio.FIRST_COMPLETED
                    )
                finally:
                    for waiter in waiters:
                        waiter.cancel()
                if not stop.is_set() and not lost.is_set():  # a half-open TCP connection?
                    await conn.execute("select 1", timeout=5)
        finally:
            conn.terminate()


class RedisSignals:
    def __init__(self, client: aioredis.Redis, wake: Wake) -> None:
        self._redis = client
        self._wake = wake
        self.connected = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        backoff = 0.1
        while not stop.is_set():
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(REDIS_CHANNEL)
                self.connected.set()
                self._wake(None)
                backoff = 0.1
                while not stop.is_set():
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        data = message["data"]
                        self._wake(data.decode() if isinstance(data, bytes) else str(data))
            except (RedisError, OSError) as exc:
                logger.warning("event signals: Redis subscription lost (%s); reconnecting", exc)
            finally:
                self.connected.clear()
                with suppress(RedisError, OSError):
                    await pubsub.aclose()
            await _pause(stop, backoff)
            backoff = min(backoff * 2, _MAX_BACKOFF_SECONDS)


class RedisRelay:
    """A wake callback that republishes signals on Redis for the API instances (``None``,
    after a reconnection, goes out as ``*``: every reader reads)."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._redis = client
        self._pending: set[asyncio.Task[None]] = set()

    def __call__(self, team: str | None) -> None:
        task = asyncio.ensure_future(self._publish(team or "*"))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _publish(self, payload: str) -> None:
        try:
            await self._redis.publish(REDIS_CHANNEL, payload)
        except (RedisError, OSError) as exc:  # readers poll anyway: no event is lost
            logger.warning("event signals: could not publish on Redis (%s)", exc)


def signals_for(
    wakeup: str, app_url: str, client: aioredis.Redis | None, wake: Wake
) -> PostgresSignals | RedisSignals:
    """The signal source a process uses: Redis when chosen (or ``auto`` with Redis)."""
    if wakeup == "redis" or (wakeup == "auto" and client is not None):
        if client is None:
            raise RuntimeError("REALTIME_WAKEUP=redis needs REDIS_URL")
        return RedisSignals(client, wake)
    return PostgresSignals(app_url, wake)

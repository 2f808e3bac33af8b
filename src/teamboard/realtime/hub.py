"""The per-process registry of open realtime streams, woken by the event signals.

The hub only *wakes* the streams of a team (``teamboard.events.signals``: LISTEN/NOTIFY,
or Redis pub/sub across instances); it never reads or forwards events itself. Each stream
reads the log on its own, from its own offset, with its subscriber's context
(``teamboard.realtime.stream``), so a slow or failing stream delays nobody else: waking is
setting a flag, and a stream that is busy simply reads everything new when it is done.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections import defaultdict
from contextlib import suppress
from types import FrameType
from typing import Any
from uuid import UUID

import redis.asyncio as aioredis

from teamboard.config import Settings
from teamboard.db import Database
from teamboard.errors import ServiceUnavailable
from teamboard.events.signals import Signals, signals_for
from teamboard.realtime.finality import FinalityWatch

logger = logging.getLogger("teamboard.realtime")


class Subscription:
    """One open stream's wake-up flag."""

    def __init__(self, team_id: UUID) -> None:
        self.team_id = team_id
        self.closing = False
        self._flag = asyncio.Event()

    def wake(self) -> None:
        self._flag.set()

    def close(self) -> None:
        """Ask the stream to end (server shutdown)."""
        self.closing = True
        self._flag.set()

    async def wait(self, seconds: float) -> bool:
        """Until woken or ``seconds`` have passed; True when woken. Clears the flag."""
        try:
            async with asyncio.timeout(seconds):
                await self._flag.wait()
        except TimeoutError:
            return False
        self._flag.clear()
        return True


class RealtimeHub:
    def __init__(self, max_subscribers: int, db: Database) -> None:
        self.finality = FinalityWatch(db)
        self._teams: dict[UUID, set[Subscription]] = defaultdict(set)
        self._count = 0
        self._max = max_subscribers
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.closing = False

    @property
    def subscribers(self) -> int:
        return self._count

    def start(self, signals: Signals) -> None:
        self._task = asyncio.create_task(signals.run(self._stop))

    @classmethod
    def for_settings(
        cls, settings: Settings, db: Database, redis: aioredis.Redis | None
    ) -> RealtimeHub:
        """A started hub fed by the signal source the settings choose."""
        if not settings.database_app_url:
            raise RuntimeError("DATABASE_APP_URL is not set")
        hub = cls(settings.realtime_max_subscribers, db)
        hub.start(signals_for(settings.realtime_wakeup, settings.database_app_url, redis, hub.wake))
        return hub

    def subscribe(self, team_id: UUID) -> Subscription:
        if self.closing:
            raise ServiceUnavailable("The server is shutting down", code="shutting_down")
        if self._count >= self._max:
            raise ServiceUnavailable(
                "Too many open streams on this server; retry later",
                code="too_many_streams",
                headers={"Retry-After": "5"},
            )
        subscription = Subscription(team_id)
        self._teams[team_id].add(subscription)
        self._count += 1
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        team = self._teams.get(subscription.team_id)
        if team is not None and subscription in team:
            team.discard(subscription)
            self._count -= 1
            if not team:
                del self._teams[subscription.team_id]

    def wake(self, team: str | None) -> None:
        """Wake the streams of one team (a team id as text), or all of them."""
        try:
            targets = [self._teams.get(UUID(team), set())] if team else self._teams.values()
        except ValueError:  # "*" from the Redis relay, or anything unexpected: everyone
            targets = self._teams.values()
        for subscriptions in targets:
            for subscription in subscriptions:
                subscription.wake()

    def close_streams(self) -> None:
        """End every stream (each finishes its response cleanly) and refuse new ones."""
        self.closing = True
        for subscriptions in self._teams.values():
            for subscription in subscriptions:
                subscription.close()

    async def close(self) -> None:
        self.close_streams()
        self._stop.set()
        await self.finality.close()
        if self._task is not None:
            with suppress(asyncio.CancelledError):
                await self._task

    def end_streams_on_signals(self) -> None:
        """Chain SIGTERM/SIGINT so open streams end at once when the server shuts down.

        uvicorn waits for open responses before its lifespan shutdown, and a stream never
        ends by itself: without this, shutdown would wait GRACEFUL_SHUTDOWN_SECONDS and
        then cut the streams. Only in the main thread (where uvicorn installs its handlers).
        """
        if threading.current_thread() is not threading.main_thread():
            return
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous = signal.getsignal(signum)

            def handler(sig: int, frame: FrameType | None, previous: Any = previous) -> None:
                loop.call_soon_threadsafe(self.close_streams)
                if callable(previous):
                    previous(sig, frame)

            signal.signal(signum, handler)

"""``teamboard worker``: the background process of the event log.

It runs, in one asyncio process:

* the consumers (``notifications``, ``webhooks``), each with its durable offset, owned by
  one worker process at a time (``teamboard.worker.consumers``); start as many worker
  processes as wanted: the others stand by and take over within ``WORKER_IDLE_SECONDS``;
* the webhook deliverer (``teamboard.webhooks.delivery``), whose queue all worker
  processes share;
* partition upkeep and log retention, at start and every ``WORKER_UPKEEP_SECONDS``;
* the analytics fold (``teamboard.analytics.rollups``), every ``ANALYTICS_FOLD_SECONDS``:
  it keeps its own watermark and several workers may run it (one fold at a time);
* the wake-up listener (``LISTEN tb_event``), which wakes the consumers and, with Redis,
  republishes the signals for the API instances' realtime feed.

Roles: the log is read and the offsets, webhooks and deliveries are managed on the
**worker role**, the dedicated, audited role that may read every team's events and nothing
else (see the events migration and ``teamboard db audit``); tenant data is written on the
**app role** with the event's team and actor as context (notifications) or read with a
webhook creator's context (authorizing a delivery), so Row Level Security applies as for
a request.

SIGTERM or SIGINT stops it gracefully: every loop finishes what it is doing (a batch, the
deliveries in flight), offsets are committed, locks released, connections closed.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from contextlib import suppress

import redis.asyncio as aioredis

from teamboard.analytics.rollups import RollupConsumer
from teamboard.config import Settings
from teamboard.db import Database
from teamboard.events.signals import PostgresSignals, RedisRelay
from teamboard.kit.redis_client import redis_client
from teamboard.notifications.consumer import NotificationsConsumer
from teamboard.webhooks.delivery import Deliverer
from teamboard.webhooks.fanout import WebhooksConsumer
from teamboard.worker import consumers
from teamboard.worker.consumers import Consumer, ConsumerRunner
from teamboard.worker.upkeep import upkeep

logger = logging.getLogger("teamboard.worker")


async def _every(
    seconds: float, stop: asyncio.Event, step: Callable[[], Awaitable[object]], what: str
) -> None:
    while not stop.is_set():
        try:
            result = await step()
            logger.info("%s: %s", what, result)
        except Exception:
            logger.exception("%s failed; next run in %s s", what, seconds)
        with suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)


class Worker:
    def __init__(
        self, settings: Settings, *, worker_url: str, worker_db: Database, app_db: Database
    ) -> None:
        self.settings = settings
        self.worker_db = worker_db
        self.app_db = app_db
        self._worker_url = worker_url
        self.deliverer = Deliverer(settings, worker_db, app_db)
        self.consumers: list[Consumer] = [NotificationsConsumer(app_db), WebhooksConsumer()]
        self.rollups = RollupConsumer(app_db)
        self.stop = asyncio.Event()

    async def run(self, redis: aioredis.Redis | None = None) -> None:
        settings, stop = self.settings, self.stop
        wakes = {consumer.name: asyncio.Event() for consumer in self.consumers}
        deliveries = asyncio.Event()
        relay = RedisRelay(redis) if redis is not None else None

        def on_signal(team: str | None) -> None:
            for wake in wakes.values():
                wake.set()
            if relay is not None:
                relay(team)

        for consumer in self.consumers:
            await consumers.register(self.worker_db, consumer.name)
        tasks = [
            PostgresSignals(self._worker_url, on_signal).run(stop),
            self.deliverer.run(deliveries, stop, settings.worker_idle_seconds),
            _every(
                settings.worker_upkeep_seconds,
                stop,
                lambda: upkeep(self.worker_db, settings),
                "upkeep",
            ),
            self.rollups.run(stop, interval=settings.analytics_fold_seconds),
            *(
                consumers.run(
                    ConsumerRunner(self.worker_db, consumer, settings.worker_batch_size),
                    wakes[consumer.name],
                    stop,
                    settings.worker_idle_seconds,
                    after_commit=deliveries.set if consumer.name == "webhooks" else None,
                )
                for consumer in self.consumers
            ),
        ]
        try:
            await asyncio.gather(*tasks)
        finally:
            await self.deliverer.aclose()


async def run_worker(settings: Settings, *, worker_url: str, app_url: str) -> None:
    """The whole worker process, until SIGTERM or SIGINT."""
    worker_db, app_db = Database(worker_url, settings), Database(app_url, settings)
    redis = redis_client(settings)
    await worker_db.open()
    await app_db.open()
    worker = Worker(settings, worker_url=worker_url, worker_db=worker_db, app_db=app_db)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, worker.stop.set)
    logger.info("worker started")
    try:
        await worker.run(redis)
    finally:
        await worker_db.close()
        await app_db.close()
        if redis is not None:
            await redis.aclose()
        logger.info("worker stopped")

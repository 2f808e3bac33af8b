"""Event-log consumers with durable offsets: at-least-once, one owner at a time.

A consumer's offset is its row of ``event_consumer``. A :class:`ConsumerRunner` owns a
consumer while it holds a session-level advisory lock on a connection of its own
(``pg_try_advisory_lock``: another worker process that tries gets ``false`` and moves on,
like ``SKIP LOCKED``; a crashed owner's lock goes with its session). A row lock
(``SELECT ... FOR UPDATE``) would do the same but hold a transaction id for the whole
batch, and a running transaction id holds back the snapshot xmin that every reader of the
log waits for (``teamboard.events.log``): the realtime feed would lag by a batch.

A batch: read the final events after the offset (``events.log``, bounded), hand them to the
consumer, then move the offset in a short transaction, *compare-and-set* on the offset read
(an owner that lost its lock without noticing cannot move it back or past another's
work). The consumer's ``handle`` gets that transaction, so work done in it (queueing
webhook deliveries) commits exactly with the offset; work done elsewhere (notifications,
on the app role) may be repeated after a crash, so handlers are idempotent.

All of this runs on the **worker role** (see the events migration): the only role that
reads the log of every team.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Protocol

from teamboard.db import Database, Tx
from teamboard.dbpool import Connection
from teamboard.events import log
from teamboard.events.log import LoggedEvent, Offset

logger = logging.getLogger("teamboard.worker.consumers")

_LOCK_SQL = "select pg_try_advisory_lock(hashtextextended('tb_consumer:' || $1, 0))"
_UNLOCK_SQL = "select pg_advisory_unlock(hashtextextended('tb_consumer:' || $1, 0))"


class Consumer(Protocol):
    """Something done for every event, in offset order."""

    name: str

    async def handle(self, events: Sequence[LoggedEvent], tx: Tx) -> None:
        """Process one batch, idempotently. ``tx`` (worker role) commits with the offset."""
        ...


class LostOwnership(Exception):
    """The offset moved under us: another runner owns the consumer now."""


@dataclass(frozen=True)
class BatchResult:
    handled: int
    full: bool  # the batch was cut at the limit: read again at once
    pending: bool  # visible events wait for older transactions to end


async def register(db: Database, name: str) -> None:
    """Create the consumer's offset at the current position if it has none (a consumer
    shipped with a migration is registered by it, at the migration's position)."""
    async with db.transaction() as tx:
        await tx.execute(
            "insert into event_consumer (name, tx_id, seq)"
            " values (%s, pg_snapshot_xmin(pg_current_snapshot()), 0) on conflict do nothing",
            (name,),
        )


class ConsumerRunner:
    def __init__(self, db: Database, consumer: Consumer, batch_size: int) -> None:
        self._db = db
        self.consumer = consumer
        self._batch_size = batch_size
        self._lock: Connection | None = None
        self._stored = Offset(0, 0)  # the offset in the database
        self._position = Offset(0, 0)  # where the next read starts (may be past it)

    @property
    def owned(self) -> bool:
        return self._lock is not None and not self._lock.is_closed()

    async def acquire(self) -> bool:
        """Try to own the consumer (never waits); loads its offset when it does."""
        if self.owned:
            return True
        conn = await self._db.acquire()
        try:
            locked = await conn.fetchval(_LOCK_SQL, self.consumer.name)
        except BaseException:
            self._db.release(conn, reusable=False)
            raise
        if not locked:
            self._db.release(conn)
            return False
        self._lock = conn
        try:
            async with self._db.transaction(write=False) as tx:
                row = await tx.fetch_one(
                    "select tx_id, seq from event_consumer where name = %s", (self.consumer.name,)
                )
        except BaseException:
            await self.release()
            raise
        if row is None:
            await self.release()
            raise LookupError(f"consumer {self.consumer.name} is not registered")
        self._stored = self._position = Offset(row["tx_id"], row["seq"])
        return True

    async def release(self) -> None:
        conn, self._lock = self._lock, None
        if conn is None:
            return
        reusable = False
        with suppress(Exception):
            await conn.fetchval(_UNLOCK_SQL, self.consumer.name)
            reusable = True
        self._db.release(conn, reusable=reusable)

    async def _check_lock(self) -> None:
        """The lock's session is alive (an idle connection may not have noticed that the
        server ended it): one round trip per batch, so that a runner whose session died
        stops at its next batch instead of working beside its successor."""
        if self._lock is None:
            raise LostOwnership(self.consumer.name)
        try:
            await self._lock.fetchval("select 1")
        except Exception as exc:
            await self.release()
            raise LostOwnership(self.consumer.name) from exc

    async def run_batch(self) -> BatchResult:
        """Read, handle and commit one batch (the runner must own the consumer)."""
        await self._check_lock()
        async with self._db.transaction(write=False) as tx:
            page = await log.read_all_teams(tx, self._position, self._batch_size)
        if page.events:
            async with self._db.transaction() as tx:
                await self.consumer.handle(page.events, tx)
                moved = await tx.fetch_value(
                    "update event_consumer set tx_id = %s, seq = %s, updated_at = now()"
                    " where name = %s and tx_id = %s and seq = %s returning 1",
                    (
                        page.position.tx_id,
                        page.position.seq,
                        self.consumer.name,
                        self._stored.tx_id,
                        self._stored.seq,
                    ),
                )
                if moved is None:
                    raise LostOwnership(self.consumer.name)
            self._stored = page.position
        self._position = page.position
        return BatchResult(len(page.events), page.full, page.pending)


async def wait_for(wake: asyncio.Event, stop: asyncio.Event, seconds: float) -> None:
    """Until woken, stopped, or ``seconds`` have passed."""
    waiters = [asyncio.ensure_future(event.wait()) for event in (wake, stop)]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


async def run(
    runner: ConsumerRunner,
    wake: asyncio.Event,
    stop: asyncio.Event,
    idle_seconds: float,
    after_commit: Callable[[], None] | None = None,
) -> None:
    """Run a consumer until ``stop``: batches back to back while there is work, a short
    growing pause while events are pending, else a wait for a wake-up (or ``idle_seconds``,
    after which a runner that does not own the consumer tries again). A failing batch is
    retried with backoff, never skipped. ``after_commit`` is called after each batch that
    handled events (to wake whoever acts on what the batch wrote)."""
    pause, backoff = 0.01, 0.5
    try:
        while not stop.is_set():
            try:
                if not await runner.acquire():
                    await wait_for(asyncio.Event(), stop, idle_seconds)
                    continue
                wake.clear()  # a signal arriving during the batch wakes the next wait
                result = await runner.run_batch()
            except LostOwnership:
                logger.warning("consumer %s: lost ownership", runner.consumer.name)
                await runner.release()
                continue
            except Exception:
                logger.exception("consumer %s: batch failed; retrying", runner.consumer.name)
                await runner.release()
                await wait_for(asyncio.Event(), stop, backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            backoff = 0.5
            if result.handled and after_commit is not None:
                after_commit()
            if result.full:
                continue
            if result.pending:
                await wait_for(wake, stop, pause)
                pause = min(pause * 2, 1.0)
            else:
                pause = 0.01
                await wait_for(wake, stop, idle_seconds)
    finally:
        await runner.release()


async def drain(runner: ConsumerRunner, *, within: float = 30.0) -> int:
    """Process every event final now (tests, tools); returns how many were handled. The
    consumer must not be owned by another runner."""
    handled = 0
    async with asyncio.timeout(within):
        if not await runner.acquire():
            raise RuntimeError(f"consumer {runner.consumer.name} is owned by another runner")
        try:
            while True:
                result = await runner.run_batch()
                handled += result.handled
                if result.full:
                    continue
                if not result.pending:
                    return handled
                await asyncio.sleep(0.02)  # until the older transactions end
        finally:
            await runner.release()

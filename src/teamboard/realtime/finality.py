"""Waking streams whose next events wait for older transactions to end.

An event committed while an older transaction still runs is *pending* (``events.log``): it
becomes readable when the snapshot xmin passes its transaction id, which no signal
announces (the older transaction may write no event, or run in another database of the
server). Instead of every such stream polling on its own, the hub keeps one watch per
process: while anyone waits, it reads the xmin every ``interval`` seconds (one statement,
no context, a pooled connection for a moment) and wakes the streams whose transaction it
has passed. A thousand pending streams cost one query per interval, and each learns within
an interval that it can read.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress

from teamboard.db import DATABASE_UNAVAILABLE, Database
from teamboard.events import log

logger = logging.getLogger("teamboard.realtime")


class FinalityWatch:
    def __init__(self, db: Database, interval: float = 0.005) -> None:
        self._db = db
        self._interval = interval
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None

    async def wait_past(self, tx_id: int, seconds: float) -> None:
        """Until the xmin passes ``tx_id``, or ``seconds`` have passed."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((tx_id, waiter))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._watch())
        try:
            with suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(waiter), seconds)
        finally:
            self._waiters = [(t, w) for t, w in self._waiters if w is not waiter]

    async def _watch(self) -> None:
        while self._waiters:
            try:
                async with self._db.transaction(write=False) as tx:
                    xmin = await log.xmin(tx)
            except DATABASE_UNAVAILABLE:
                logger.warning("realtime: cannot read the snapshot xmin")
                await asyncio.sleep(1)
                continue
            for tx_id, waiter in self._waiters:
                if tx_id < xmin and not waiter.done():
                    waiter.set_result(None)
            await asyncio.sleep(self._interval)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task

"""Keeping the rollups current: the incremental consumer, and the rebuild.

The rule that makes the rollups exact (see the analytics migration): a fold takes every
event whose transaction id lies in ``[old watermark, new watermark)``, where the new
watermark is the ``xmin`` of a snapshot taken as the fold starts. All transactions below it
have ended, so an event committing later carries a larger id and is folded next time; none
is skipped and none is counted twice, however transactions interleave. Dashboards add the
visible events at or above the watermark (the tail) in the same snapshot.

* :class:`RollupConsumer` runs ``tb_analytics_refresh()`` (SECURITY DEFINER: the worker may
  use the app role). It is safe in any number of processes: a fold holds an advisory lock,
  and a second one returns at once (``skipped``).
* :func:`rebuild` folds everything again from scratch (all teams, or one), partition by
  partition in one transaction, as the owner: dashboards keep reading the previous rollups
  until it commits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from teamboard.db import Database, Tx

logger = logging.getLogger("teamboard.analytics")

#: The advisory lock key held by every fold (the migration's FOLD_LOCK).
FOLD_LOCK = 7_163_021_501
#: A fold may run long after a backlog (a bulk load); the app role's default is 15 s.
FOLD_TIMEOUT_MS = 30 * 60 * 1000

# Every event partition and its occurred_at range [lo, hi) (NULLs: the default partition).
PARTITIONS_SQL = """
select c.relname as name, m[1]::timestamptz as lo, m[2]::timestamptz as hi
from pg_catalog.pg_inherits i
join pg_catalog.pg_class c on c.oid = i.inhrelid
left join lateral pg_catalog.regexp_match(
    pg_catalog.pg_get_expr(c.relpartbound, c.oid), 'FROM \\(''([^'']*)''\\) TO \\(''([^'']*)''\\)'
) as m on true
where i.inhparent = 'public.event'::regclass
order by 2 nulls last
"""


@dataclass(frozen=True)
class FoldResult:
    """``folded`` events in this fold; every event below ``watermark`` (a transaction id) is
    in the rollups; ``rebucketed`` teams were folded again after a time zone change;
    ``skipped``: another fold was running, nothing was done."""

    folded: int
    watermark: int
    rebucketed: int
    skipped: bool = False


class RollupConsumer:
    """The analytics consumer of the event log, for ``teamboard worker``.

    Call :meth:`fold` whenever events may have been appended (on a timer, or when woken by
    a notification); each call is one short transaction that folds what has committed
    since the previous one. It keeps its own position (the watermark row), so it needs no
    offset from the caller, and a failed fold changes nothing (retry later).
    """

    def __init__(self, db: Database, *, timeout_ms: int = FOLD_TIMEOUT_MS) -> None:
        self._db = db
        self._timeout_ms = timeout_ms

    async def fold(self) -> FoldResult:
        async with self._db.transaction() as tx:
            await tx.execute(
                "select set_config('statement_timeout', %s, true)", (f"{self._timeout_ms}ms",)
            )
            row = await tx.fetch_one(
                "select folded, watermark::text::bigint as watermark, rebucketed"
                " from tb_analytics_refresh()"
            )
        if row is None:
            return FoldResult(0, 0, 0, skipped=True)
        return FoldResult(row["folded"], row["watermark"], row["rebucketed"])

    async def run(self, stop: asyncio.Event, *, interval: float = 1.0) -> None:
        """Fold every ``interval`` seconds until ``stop`` is set; errors are logged and
        retried at the next tick."""
        while not stop.is_set():
            try:
                result = await self.fold()
                if result.folded or result.rebucketed:
                    logger.info("analytics fold", extra={"folded": result.folded})
            except Exception:
                logger.exception("analytics fold failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)


@dataclass(frozen=True)
class RebuildResult:
    folded: int
    watermark: int


Progress = Callable[[int, int], None]


async def _ranges(tx: Tx) -> list[tuple[datetime | None, datetime | None]]:
    """The occurred_at ranges to fold one by one: each partition's, and the gaps around and
    between them (what the default partition may hold)."""
    rows = await tx.fetch_all(PARTITIONS_SQL)
    bounds = [(row["lo"], row["hi"]) for row in rows if row["lo"] is not None]
    ranges: list[tuple[datetime | None, datetime | None]] = []
    edge: datetime | None = None
    for lo, hi in bounds:
        if edge is None or lo > edge:
            ranges.append((edge, lo))
        ranges.append((lo, hi))
        edge = hi
    ranges.append((edge, None))
    return ranges


async def rebuild(
    db: Database, *, team_id: UUID | None = None, progress: Progress | None = None
) -> RebuildResult:
    """Fold the events of every team (or of one) again from scratch, as the owner.

    A full rebuild moves the watermark to a fresh snapshot's ``xmin``; a team's rebuild
    folds that team up to the current watermark, which the lock keeps still meanwhile.
    """
    async with db.transaction() as tx:
        await tx.execute("select set_config('statement_timeout', '0', true)")
        await tx.execute("select pg_advisory_xact_lock(%s)", (FOLD_LOCK,))
        if team_id is None:
            watermark = await tx.fetch_value("select pg_snapshot_xmin(pg_current_snapshot())::text")
        else:
            watermark = await tx.fetch_value(
                "select tx_id::text from analytics_watermark where id = 1"
            )
        await tx.execute("select tb_analytics_reset(%s)", (team_id,))
        ranges = await _ranges(tx)
        folded = 0
        for done, (lo, hi) in enumerate(ranges):
            folded += await tx.fetch_value(
                "select tb_analytics_fold('0', %s::text::xid8, %s,"
                " coalesce(%s, '-infinity'::timestamptz), coalesce(%s, 'infinity'::timestamptz))",
                (watermark, team_id, lo, hi),
            )
            if progress is not None:
                progress(done + 1, len(ranges))
        # The time counters are kept by triggers, not folded: counted again all the same,
        # so that a rebuild also repairs them.
        await tx.execute("select tb_analytics_time_rebuild(%s)", (team_id,))
        if team_id is None:
            await tx.execute(
                "update analytics_watermark set tx_id = %s::text::xid8, folded_at = now(),"
                " updated_at = now() where id = 1",
                (watermark,),
            )
    return RebuildResult(folded, int(watermark))

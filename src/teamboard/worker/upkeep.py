"""Upkeep of the event log and the webhook delivery log (the worker runs it periodically;
``teamboard db partitions`` on demand).

* Monthly partitions of ``event`` exist for this month and ``EVENT_PARTITIONS_AHEAD``
  months ahead (at least two), and no role but the owner keeps any privilege on any
  partition: rows are only reachable through the parent, whose policies apply.
* Retention: partitions entirely older than ``EVENT_RETENTION_MONTHS`` complete months are
  detached, then dropped (0 keeps everything).
* Completed webhook deliveries older than ``WEBHOOK_LOG_RETENTION_DAYS`` are deleted.
* Expired idempotency records (kept 24 hours, each with a whole response) are deleted, at
  most ``IDEMPOTENCY_PURGE_BATCH`` a pass (a backlog goes over the next passes).

The DDL runs inside SECURITY DEFINER functions of the owner (see the events migration),
which the worker role may execute: the worker itself owns nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from teamboard.config import Settings
from teamboard.db import Database

#: Expired idempotency records deleted by one upkeep pass, at most.
IDEMPOTENCY_PURGE_BATCH = 10_000


@dataclass
class UpkeepReport:
    created: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    deliveries_purged: int = 0
    idempotency_records_purged: int = 0

    def __str__(self) -> str:
        return (
            f"partitions created: {', '.join(self.created) or 'none'}; "
            f"already present: {', '.join(self.present) or 'none'}; "
            f"dropped: {', '.join(self.dropped) or 'none'}; "
            f"webhook deliveries purged: {self.deliveries_purged}; "
            f"idempotency records purged: {self.idempotency_records_purged}"
        )


async def upkeep(
    db: Database, settings: Settings, *, ahead: int | None = None, retention: int | None = None
) -> UpkeepReport:
    """One pass of upkeep on ``db`` (the worker role); each step in its own transaction."""
    report = UpkeepReport()
    months_ahead = settings.event_partitions_ahead if ahead is None else ahead
    keep = settings.event_retention_months if retention is None else retention
    async with db.transaction() as tx:
        rows = await tx.fetch_all(
            "select partition_name, created from tb_ensure_event_partitions(%s)",
            (months_ahead,),
        )
    for row in rows:
        (report.created if row["created"] else report.present).append(row["partition_name"])
    if keep > 0:
        async with db.transaction() as tx:
            rows = await tx.fetch_all("select * from tb_drop_event_partitions(%s) p", (keep,))
        report.dropped = [row["p"] for row in rows]
    async with db.transaction() as tx:
        report.deliveries_purged = int(
            await tx.fetch_value(
                "with gone as (delete from webhook_delivery where completed_at"
                " < now() - make_interval(days => %s) returning 1) select count(*) from gone",
                (settings.webhook_log_retention_days,),
            )
        )
    async with db.transaction() as tx:
        report.idempotency_records_purged = int(
            await tx.fetch_value(
                "select tb_purge_idempotency_records(%s)", (IDEMPOTENCY_PURGE_BATCH,)
            )
        )
    return report

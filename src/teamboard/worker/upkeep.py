"""Upkeep of the event log, the delivery and idempotency logs, the trash and the stored
attachment bytes (the worker runs it periodically; ``teamboard db partitions`` on demand).

* Monthly partitions of ``event`` exist for this month and ``EVENT_PARTITIONS_AHEAD``
  months ahead (at least two), and no role but the owner keeps any privilege on any
  partition: rows are only reachable through the parent, whose policies apply.
* Retention: partitions entirely older than ``EVENT_RETENTION_MONTHS`` complete months are
  detached, then dropped (0 keeps everything).
* Completed webhook deliveries older than ``WEBHOOK_LOG_RETENTION_DAYS`` are deleted.
* Expired idempotency records (kept 24 hours, each with a whole response) are deleted, at
  most ``IDEMPOTENCY_PURGE_BATCH`` a pass (a backlog goes over the next passes).
* Trash: tasks and projects soft-deleted more than ``TRASH_RETENTION_DAYS`` days and an
  hour ago (the restore window closes at the days: the two never race) are deleted for good
  with what hangs off them, ``TRASH_PURGE_BATCH`` rows a transaction and at most
  ``TRASH_PURGE_TRANSACTIONS`` transactions a pass (0 days keeps them); a task of a live
  project appends ``task.purged``.
* Stored attachment bytes whose rows are gone (purged trash, deleted teams, a cleanup that
  failed after its request) are removed (``teamboard.attachments.cleanup.sweep``), unless
  the storage is local and its directory is not on this machine (``sweeps_here``).

The DDL runs inside SECURITY DEFINER functions of the owner (see the events migration),
which the worker role may execute: the worker itself owns nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from teamboard.attachments import repository
from teamboard.attachments.cleanup import sweep, sweeps_here
from teamboard.attachments.storage import build_storage
from teamboard.config import Settings
from teamboard.db import Database

#: Expired idempotency records deleted by one upkeep pass, at most.
IDEMPOTENCY_PURGE_BATCH = 10_000
#: Expired trash deleted in one transaction (tasks, then emptied projects; each with its
#: comments, attachments, time entries...), and the most such transactions of one pass: a
#: deleted project of a million tasks goes over several passes, never in one long lock.
TRASH_PURGE_BATCH = 500
TRASH_PURGE_TRANSACTIONS = 100


@dataclass
class UpkeepReport:
    created: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    deliveries_purged: int = 0
    idempotency_records_purged: int = 0
    tasks_purged: int = 0
    projects_purged: int = 0
    objects_removed: int = 0
    sweep_skipped: bool = False

    def __str__(self) -> str:
        return (
            f"partitions created: {', '.join(self.created) or 'none'}; "
            f"already present: {', '.join(self.present) or 'none'}; "
            f"dropped: {', '.join(self.dropped) or 'none'}; "
            f"webhook deliveries purged: {self.deliveries_purged}; "
            f"idempotency records purged: {self.idempotency_records_purged}; "
            f"deleted tasks purged: {self.tasks_purged}; "
            f"deleted projects purged: {self.projects_purged}; "
            f"attachment objects removed: {self.objects_removed}"
            + (" (skipped: no attachment directory here)" if self.sweep_skipped else "")
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
    try:
        if settings.trash_retention_days > 0:
            await _purge_trash(db, settings.trash_retention_days, report)
    finally:  # what earlier passes and requests queued goes even if this purge failed
        if sweeps_here(settings):
            report.objects_removed = await sweep(
                db, build_storage(settings), repository.take_any_purges
            )
        else:
            report.sweep_skipped = True
    return report


async def _purge_trash(db: Database, retention_days: int, report: UpkeepReport) -> None:
    for _ in range(TRASH_PURGE_TRANSACTIONS):
        async with db.transaction() as tx:
            row = await tx.fetch_one(
                "select tasks, projects from tb_purge_deleted_work(%s, %s)",
                (retention_days, TRASH_PURGE_BATCH),
            )
        assert row is not None  # the function returns one row
        report.tasks_purged += row["tasks"]
        report.projects_purged += row["projects"]
        if row["tasks"] < TRASH_PURGE_BATCH and row["projects"] < TRASH_PURGE_BATCH:
            return

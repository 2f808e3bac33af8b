"""The trash purge appends ``task.purged`` for a task of a live project, and never races a
restore.

``tb_purge_deleted_work`` (migration ``2026-12-07_trash_retention``) changes in two ways:

* **Events.** A task purged from the trash of a live project appends ``task.purged`` (no
  actor: upkeep did it; the payload holds when it was deleted and the retention applied), in
  the purge's transaction: the project's viewers, through the realtime feed and webhooks,
  learn that the task is gone for good. A deleted project and its tasks go without events:
  ``project.deleted`` took them out of every view, and once the project's row is gone no
  member's visible set holds it, so Row Level Security would show an event about them to
  nobody (webhook deliveries would be queued only to be skipped).
* **A grace hour.** Restoring a task is refused once its retention period is over (the app
  checks it: ``teamboard.tasks.service.restore_task``), and the purge deletes only what is
  an hour past it. Before, a restore running at the boundary locked its task while the
  purge deleted the subtasks deleted with it (or the purge's batch ended inside the tree),
  and the task came back without them. Now the two never touch the same rows, unless a
  restore transaction lasts an hour (servers and workers must have the same
  ``TRASH_RETENTION_DAYS``).

Revision ID: 20261207_purge_events_grace
Revises: 20261207_timer_cap
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

from teamboard.migrations.support import OR_REPLACE_FUNCTION, rewritten, sibling

previous = sibling("2026-12-07_trash_retention.py")
summaries = sibling("2026-12-07_task_summaries.py")

revision = "20261207_purge_events_grace"
down_revision = "20261207_timer_cap"
branch_labels = None
depends_on = None

CUTOFF = "cutoff := now() - make_interval(days => retention_days);"
GRACE_CUTOFF = "cutoff := now() - make_interval(days => retention_days, hours => 1);"
#: The end of the purge's delete of tasks: its count.
COUNTED = """                returning 1
            )
            select count(*)::integer into tasks from gone;"""
#: The same delete returning its rows, those of a live project appending ``task.purged``.
LOGGED = f"""                returning t.team_id, t.id, t.project_id, t.deleted_at
            ), logged as (
                insert into event (team_id, id, kind, subject_id, project_id, payload)
                select g.team_id, tb_uuid7(), 'task.purged', g.id, g.project_id,
                       jsonb_build_object('deleted_at', {summaries.api_text("g.deleted_at")},
                                          'retention_days', retention_days)
                from gone g
                join project p on p.team_id = g.team_id and p.id = g.project_id
                 and p.deleted_at is null
            )
            select count(*)::integer into tasks from gone;"""


def _purge_function(*, logged: bool) -> str:
    """The function as ``2026-12-07_trash_retention`` wrote it, with this migration's
    changes when ``logged``."""
    changes = [OR_REPLACE_FUNCTION]
    if logged:
        changes += [(CUTOFF, GRACE_CUTOFF), (COUNTED, LOGGED)]
    return rewritten(previous.PURGE_FUNCTION, changes, "tb_purge_deleted_work")


def upgrade() -> None:
    op.execute(_purge_function(logged=True))


def downgrade() -> None:
    op.execute(_purge_function(logged=False))

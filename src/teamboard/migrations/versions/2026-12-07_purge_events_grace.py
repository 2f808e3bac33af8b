"""The trash purge appends an event for every row it deletes, and never races a restore.

``tb_purge_deleted_work`` (migration ``2026-12-07_trash_retention``) changes in two ways:

* **Events.** Every purged task appends ``task.purged`` and every purged project
  ``project.purged`` (no actor: upkeep did it; the payload holds when the row was deleted
  and the retention applied), in the purge's transaction, as every change appends its
  event. Webhooks, the realtime feed and any copy kept outside learn that the row is gone
  for good.
* **A grace hour.** Restoring a task is refused once its retention period is over (the app
  checks it: ``teamboard.tasks.service.restore_task``), and the purge deletes only what is
  an hour past it. Before, a restore running at the boundary locked its task while the
  purge deleted the subtasks deleted with it (or the purge's batch ended inside the tree),
  and the task came back without them. Now the two never touch the same rows, unless a
  restore transaction lasts an hour.

Revision ID: 20261207_purge_events_grace
Revises: 20261207_timer_cap
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

from teamboard.migrations.support import sibling

previous = sibling("2026-12-07_trash_retention.py")
summaries = sibling("2026-12-07_task_summaries.py")

revision = "20261207_purge_events_grace"
down_revision = "20261207_timer_cap"
branch_labels = None
depends_on = None

CUTOFF = "cutoff := now() - make_interval(days => retention_days);"
GRACE_CUTOFF = "cutoff := now() - make_interval(days => retention_days, hours => 1);"


def _counted(table: str) -> str:
    """The end of the purge's delete of ``table`` (``task`` or ``project``): its count."""
    return f"""                returning 1
            )
            select count(*)::integer into {table}s from gone;"""


def _logged(table: str, project: str) -> str:
    """The same delete returning its rows, each appending ``{table}.purged``; ``project``
    is the deleted row's project id (``t.project_id``, ``p.id``)."""
    alias = table[0]
    deleted_at = summaries.api_text("g.deleted_at")
    return f"""                returning {alias}.team_id, {alias}.id, {project} as project_id,
                    {alias}.deleted_at
            ), logged as (
                insert into event (team_id, id, kind, subject_id, project_id, payload)
                select g.team_id, tb_uuid7(), '{table}.purged', g.id, g.project_id,
                       jsonb_build_object('deleted_at', {deleted_at},
                                          'retention_days', retention_days)
                from gone g
                returning 1
            )
            select count(*)::integer into {table}s from logged;"""


def _purge_function(*, logged: bool) -> str:
    text = str(previous.PURGE_FUNCTION).replace("create function", "create or replace function", 1)
    if not logged:
        return text
    for old, new in (
        (CUTOFF, GRACE_CUTOFF),
        (_counted("task"), _logged("task", "t.project_id")),
        (_counted("project"), _logged("project", "p.id")),
    ):
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text


def upgrade() -> None:
    op.execute(_purge_function(logged=True))


def downgrade() -> None:
    op.execute(_purge_function(logged=False))

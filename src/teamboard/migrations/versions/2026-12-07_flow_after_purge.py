"""A rebuild of the analytics counts a purged task's deletion in the cumulative flow.

``analytics_flow_fact`` (migration ``2026-11-22_analytics``) counts a ``task.deleted`` or
``task.restored`` event in the category of the task's current status, read from its row.
Once the trash purge deleted the row, a fold from scratch (``teamboard analytics rebuild``,
or the refold after a team changes its time zone) found nothing there: the task's creation
still counted +1 and its deletion no longer counted -1, so every purged task of a live
project inflated its category's total (the incremental fold, which read the row before the
purge, was right).

* The purge's ``task.purged`` event (``2026-12-07_purge_events_grace``) now records
  ``status_category``, the category of the task's status when it went.
* Where the row is gone, the view takes the category from that event: the same category
  the view gave while the row existed. Tasks purged along with their project append no
  event; their project's statuses go with it, so once the project is purged neither their
  creation nor their deletion counts (in between, a rebuild counts the creation only: a
  known gap, on the team's daily flow only, while a deleted project's tasks are purged).

The event is looked up only for a missing row, by the index on ``(team_id, subject_id,
occurred_at)`` from the deletion's time on: one index probe per partition since then
(``teamboard db explain`` counts a probe by subject as such, not as a read of the
partition's events).

Revision ID: 20261207_flow_after_purge
Revises: 20261207_purge_events_grace
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

from teamboard.migrations.support import OR_REPLACE_VIEW, rewritten, sibling

analytics = sibling("2026-11-22_analytics.py")
purge = sibling("2026-12-07_purge_events_grace.py")

revision = "20261207_flow_after_purge"
down_revision = "20261207_purge_events_grace"
branch_labels = None
depends_on = None

_ROW_CATEGORY = """    select s.category
    from ("""
_ROW_OR_EVENT_CATEGORY = """    select coalesce(s.category, purged.category) as category
    from ("""
_ROW_JOINS = """    join task t on t.team_id = e.team_id and t.id = ids.task_id
    join status s on s.team_id = t.team_id and s.id = t.status_id
    offset 0"""
_ROW_OR_EVENT_JOINS = """    left join task t on t.team_id = e.team_id and t.id = ids.task_id
    left join status s on s.team_id = t.team_id and s.id = t.status_id
    -- A task purged since (trash retention): the category its event recorded.
    left join lateral (
        select p.payload ->> 'status_category' as category
        from event p
        where t.id is null and p.team_id = e.team_id and p.subject_id = ids.task_id
          and p.occurred_at >= e.occurred_at and p.kind = 'task.purged'
        limit 1
    ) as purged on true
    where coalesce(s.category, purged.category) is not null
    offset 0"""


_EVENT_ROWS = "returning t.team_id, t.id, t.project_id, t.deleted_at"
_EVENT_ROWS_WITH_STATUS = "returning t.team_id, t.id, t.project_id, t.status_id, t.deleted_at"
_PAYLOAD_END = "'retention_days', retention_days)"
_PAYLOAD_END_WITH_CATEGORY = (
    "'retention_days', retention_days,\n" + " " * 42 + "'status_category', s.category)"
)
_LIVE_PROJECT = "and p.deleted_at is null\n"
_LIVE_PROJECT_AND_STATUS = (
    _LIVE_PROJECT
    + " " * 16
    + "left join status s on s.team_id = g.team_id and s.id = g.status_id\n"
)


def _purge_function(*, with_category: bool) -> str:
    """The purge of ``2026-12-07_purge_events_grace``, its event recording the task's
    status category when ``with_category``."""
    text = str(purge._purge_function(logged=True))
    if not with_category:
        return text
    changes = (
        (_EVENT_ROWS, _EVENT_ROWS_WITH_STATUS),
        (_PAYLOAD_END, _PAYLOAD_END_WITH_CATEGORY),
        (_LIVE_PROJECT, _LIVE_PROJECT_AND_STATUS),
    )
    return rewritten(text, changes, "tb_purge_deleted_work")


def _flow_view(*, after_purge: bool) -> str:
    """``analytics_flow_fact`` as ``2026-11-22_analytics`` created it, reading a purged
    task's event when ``after_purge``."""
    views = str(analytics.VIEWS)
    start = views.index("create view analytics_flow_fact")
    text = views[start : views.index(";", views.index("where e.kind in ('task.deleted'", start))]
    changes = [OR_REPLACE_VIEW]
    if after_purge:
        changes += [(_ROW_CATEGORY, _ROW_OR_EVENT_CATEGORY), (_ROW_JOINS, _ROW_OR_EVENT_JOINS)]
    return rewritten(text, changes, "analytics_flow_fact")


def upgrade() -> None:
    op.execute(_purge_function(with_category=True))
    op.execute(_flow_view(after_purge=True))


def downgrade() -> None:
    op.execute(_flow_view(after_purge=False))
    op.execute(_purge_function(with_category=False))

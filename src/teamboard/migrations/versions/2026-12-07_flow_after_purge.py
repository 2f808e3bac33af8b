"""A rebuild of the analytics counts a purged task's deletion in the cumulative flow.

``analytics_flow_fact`` (migration ``2026-11-22_analytics``) counts a ``task.deleted`` or
``task.restored`` event in the category of the task's current status, read from its row.
Once the trash purge deleted the row, a rebuild found nothing there: the task's creation
still counted +1 and its deletion no longer counted -1, so every purged task of a live
project inflated its category's total after ``teamboard analytics rebuild`` (the
incremental fold, which read the row before the purge, was right). Where the row is gone,
the view now takes the category from the task's ``task.purged`` event, which records it
(``2026-12-07_purge_events_grace``). Tasks of a purged project need nothing: their statuses
went with it, so neither their creation nor their deletion counts. The event is looked up
only for a missing row, by the index on ``(team_id, subject_id, occurred_at)``, from the
deletion on: its time (partitions before it are pruned) and its transaction id (the purge
came later; where the deletion is in the dashboards' tail, not folded yet, the lookup reads
only the tail too, which is what ``teamboard db explain`` checks).

Revision ID: 20261207_flow_after_purge
Revises: 20261207_purge_events_grace
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

from teamboard.migrations.support import sibling

analytics = sibling("2026-11-22_analytics.py")

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
          and p.occurred_at >= e.occurred_at and p.tx_id >= e.tx_id
          and p.kind = 'task.purged'
        limit 1
    ) as purged on true
    where coalesce(s.category, purged.category) is not null
    offset 0"""


def _flow_view(*, after_purge: bool) -> str:
    """``analytics_flow_fact`` as ``2026-11-22_analytics`` created it, reading a purged
    task's event when ``after_purge``."""
    views = str(analytics.VIEWS)
    start = views.index("create view analytics_flow_fact")
    text = views[start : views.index(";", views.index("where e.kind in ('task.deleted'", start))]
    text = text.replace("create view", "create or replace view", 1)
    if not after_purge:
        return text
    for old, new in ((_ROW_CATEGORY, _ROW_OR_EVENT_CATEGORY), (_ROW_JOINS, _ROW_OR_EVENT_JOINS)):
        if text.count(old) != 1:  # the view changed since: this must be rewritten
            raise RuntimeError(f"analytics_flow_fact: expected one {old!r}")
        text = text.replace(old, new)
    return text


def upgrade() -> None:
    op.execute(_flow_view(after_purge=True))


def downgrade() -> None:
    op.execute(_flow_view(after_purge=False))

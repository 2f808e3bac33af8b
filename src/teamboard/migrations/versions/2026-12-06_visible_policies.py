"""Task and project reads check the visible projects only: being in that set already means
being a member of the team.

``tb_visible_project_ids()`` answers ``{}`` to a caller who is not a member (no role, or
no context), so the ``tb_current_member_role() is not null`` conjunct the SELECT policies
of ``task`` and ``project`` also carried decided nothing, and cost a function call (an
init plan) per table reference of every read. The write policies keep their role checks
(they compare the role with the roles allowed to write).

Revision ID: 20261206_visible_policies
Revises: 20261206_task_cards
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "20261206_visible_policies"
down_revision = "20261206_task_cards"
branch_labels = None
depends_on = None

_TEAM = "team_id = (select tb_current_team_id())"
_MEMBER = "(select tb_current_member_role()) is not null"
_TASK_VISIBLE = "array_position((select tb_visible_project_ids()), project_id) is not null"
_PROJECT_VISIBLE = "id = any((select tb_visible_project_ids())::uuid[])"


def _select(table: str, *conditions: str) -> str:
    return f"alter policy {table}_select on {table} using ({' and '.join(conditions)})"


def upgrade() -> None:
    op.execute(_select("task", _TEAM, _TASK_VISIBLE))
    op.execute(_select("project", _TEAM, _PROJECT_VISIBLE))


def downgrade() -> None:
    op.execute(_select("task", _TEAM, _MEMBER, _TASK_VISIBLE))
    op.execute(_select("project", _TEAM, _MEMBER, _PROJECT_VISIBLE))

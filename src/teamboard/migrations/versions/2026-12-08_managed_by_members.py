"""``tb_private_projects_managed_only_by`` answers members of the context team only.

The function (migration ``2026-12-07_private_managers``) runs as its owner, to count the
private projects of the context team that only ``target`` can still manage, which the
caller cannot see. The service calls it after checking the caller's role, but the function
itself did not check that the caller belongs to the team: a session of the app role naming
another team in its context could count that team's private projects (a review found it).
It now answers 0 unless the caller is a member of the context team (any role: a member
leaving the team asks it about themselves).

Revision ID: 20261208_managed_by_members
Revises: 20261208_edit_versions
Create Date: 2026-12-08
"""

from __future__ import annotations

from alembic import op

from teamboard.migrations.support import OR_REPLACE_FUNCTION, rewritten, sibling

previous = sibling("2026-12-07_private_managers.py")

revision = "20261208_managed_by_members"
down_revision = "20261208_edit_versions"
branch_labels = None
depends_on = None

MEMBERS_ONLY = (
    "where p.team_id = tb_current_team_id() and p.visibility = 'private'",
    "where p.team_id = tb_current_team_id() and tb_current_member_role() is not null\n"
    "      and p.visibility = 'private'",
)


def upgrade() -> None:
    changes = (OR_REPLACE_FUNCTION, MEMBERS_ONLY)
    op.execute(rewritten(previous.CREATE, changes, "tb_private_projects_managed_only_by"))


def downgrade() -> None:
    op.execute(rewritten(previous.CREATE, (OR_REPLACE_FUNCTION,), "the previous function"))

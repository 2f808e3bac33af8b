"""How many private projects of the context team only one member can still manage.

A private project is visible to its members only (owners and admins included), and guests
cannot add members: once its last member who is not a guest is gone, nobody can reach it
again. The project route refuses to remove that member (409 ``last_project_member``); the
team routes that remove a member or demote them to guest must refuse too, but the admin
calling them cannot see the projects in question. ``tb_private_projects_managed_only_by``
counts them as the owner would, within the context team, and returns the count only (never
which projects), for the service to refuse with it.

Revision ID: 20261207_private_managers
Revises: 20261207_idempotency_expiry
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

from teamboard.migrations.support import app_role

revision = "20261207_private_managers"
down_revision = "20261207_idempotency_expiry"
branch_labels = None
depends_on = None

FUNCTION = "tb_private_projects_managed_only_by(uuid)"


CREATE = """
create function tb_private_projects_managed_only_by(target uuid) returns integer
    language sql stable security definer set search_path = pg_catalog, public, pg_temp
    as $$
    select count(*)::integer from project p
    join project_member pm on pm.team_id = p.team_id and pm.project_id = p.id
        and pm.user_id = target
    where p.team_id = tb_current_team_id() and p.visibility = 'private'
      and p.deleted_at is null
      and not exists (
          select 1 from project_member other join team_member m
              on m.team_id = other.team_id and m.user_id = other.user_id
          where other.team_id = p.team_id and other.project_id = p.id
            and other.user_id <> target and m.role <> 'guest')
$$;
"""


def upgrade() -> None:
    op.execute(CREATE)
    op.execute(f"revoke all on function {FUNCTION} from public")
    op.execute(f"grant execute on function {FUNCTION} to {app_role()}")


def downgrade() -> None:
    op.execute(f"drop function {FUNCTION}")

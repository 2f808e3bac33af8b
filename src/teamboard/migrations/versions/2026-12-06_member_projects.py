"""``tb_visible_project_ids()`` reads the caller's project memberships through the
``(team_id, user_id)`` index.

The function asked for projects ``where exists (select 1 from project_member pm where
pm.team_id = p.team_id and pm.project_id = p.id and pm.user_id = caller)``; PostgreSQL
turned the EXISTS into a hashed subplan keyed on the correlated columns, whose only own
condition was ``user_id = caller``: a sequential scan of every project membership of every
team. On the 10M-event benchmark data set (1,955 memberships) a call took 97 µs instead of
about 10, and every request calls it (each Row Level Security policy on a project's rows,
and the analytics dashboards' visibility check). The caller's memberships in the team are
now one range of ``ix_project_member_team_id_user_id``.

Revision ID: 20261206_member_projects
Revises: 20261206_analytics_nodes
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "20261206_member_projects"
down_revision = "20261206_analytics_nodes"
branch_labels = None
depends_on = None

_FUNCTION = """
create or replace function tb_visible_project_ids() returns uuid[]
    language plpgsql stable security definer set search_path = pg_catalog, public
    as $$
    declare
        team uuid := tb_current_team_id();
        caller uuid := tb_current_user_id();
        caller_role text;
        ids uuid[];
    begin
        select m.role into caller_role from team_member m
        where m.team_id = team and m.user_id = caller;
        if caller_role is null then
            return '{{}}';
        end if;
        select coalesce(array_agg(p.id), '{{}}') into ids from project p
        where p.team_id = team
          and (
              (p.visibility = 'team' and caller_role <> 'guest')
              or {membership}
          );
        return ids;
    end
    $$;
"""

IN_TEAM_RANGE = (
    "p.id in (select pm.project_id from project_member pm"
    " where pm.team_id = team and pm.user_id = caller)"
)
#: As 20261206_policy_functions wrote it.
CORRELATED = (
    "exists (select 1 from project_member pm"
    " where pm.team_id = p.team_id and pm.project_id = p.id and pm.user_id = caller)"
)


def upgrade() -> None:
    op.execute(_FUNCTION.format(membership=IN_TEAM_RANGE))


def downgrade() -> None:
    op.execute(_FUNCTION.format(membership=CORRELATED))

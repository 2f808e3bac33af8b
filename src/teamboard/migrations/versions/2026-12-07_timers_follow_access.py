"""A running timer stops when its user loses sight of its project.

A timer runs on a task of a project its user can see; the user stops it through the
running-timer routes, which read it under Row Level Security. When the user lost sight of
the project (removed from a private project, a guest removed from a project, a member
demoted to guest, a project made private without them), the timer became invisible to them:
they could neither see nor stop it, and the one-running-timer index refused every new timer
in the team for good (409 ``timer_already_running`` naming no entry).

Every such loss rewrites the user's visible set (``team_member_visibility.project_ids``,
kept by the triggers of ``2026-12-06_visible_project_sets``), so one trigger on that column
covers them all: ``tb_stop_timers_out_of_sight`` stops the user's running timer in the team
when its project left the set, at that moment (it may then exceed
``TIME_ENTRY_MAX_SECONDS``, which bounds what users send and the timers they stop; an admin
can still edit it). The function is the owner's (SECURITY DEFINER): whoever changed the
membership may not see the entry either. Removing a member from the team keeps their
entries as they were (they cannot start a timer in a team they left; back in the team, they
see it again and can stop it).

Revision ID: 20261207_timers_follow_access
Revises: 20261207_trash_retention
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "20261207_timers_follow_access"
down_revision = "20261207_trash_retention"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        create function tb_stop_timers_out_of_sight() returns trigger
            language plpgsql security definer set search_path = pg_catalog, public, pg_temp
            as $$
        begin
            update time_entry e set ended_at = greatest(now(), e.started_at)
            where e.team_id = new.team_id and e.user_id = new.user_id
              and e.ended_at is null and not (e.project_id = any(new.project_ids));
            return null;
        end
        $$;
        """
    )
    op.execute("revoke all on function tb_stop_timers_out_of_sight() from public")
    op.execute(
        "create trigger team_member_visibility_stop_timers"
        " after update of project_ids on team_member_visibility for each row"
        " when (not (old.project_ids <@ new.project_ids))"
        " execute function tb_stop_timers_out_of_sight()"
    )


def downgrade() -> None:
    op.execute("drop trigger team_member_visibility_stop_timers on team_member_visibility")
    op.execute("drop function tb_stop_timers_out_of_sight()")

"""A running timer stops when its user loses sight of its project.

A timer runs on a task of a project its user can see; the user stops it through the
running-timer routes, which read it under Row Level Security. When the user lost sight of
the project (removed from a private project, a guest removed from a project, a member
demoted to guest, a project made private without them), the timer became invisible to them:
they could neither see nor stop it, and the one-running-timer index refused every new timer
in the team for good (409 ``timer_already_running`` naming no entry).

Every such loss rewrites the user's visible set (``team_member_visibility.project_ids``,
kept by the triggers of ``2026-12-06_visible_project_sets``), so triggers on that table
cover them all, a member back in the team included (their set is inserted anew):
``tb_stop_timers_out_of_sight_of`` stops the user's running timer in the team
when its project left the set, at that moment (it may then exceed
``TIME_ENTRY_MAX_SECONDS``, which bounds what users send and the timers they stop; an admin
can still edit it), and appends the ``time_entry.stopped`` event a stop through the API
appends, with ``"reason": "project_out_of_sight"`` and the member whose change caused it as
the actor. The function is the owner's (SECURITY DEFINER): whoever changed the
membership may not see the entry either. Removing a member from the team keeps their
entries as they were (they cannot start a timer in a team they left; back in the team, they
see it again and can stop it, or it stops when they come back without that project).
The upgrade stops the timers already stuck that way.

Revision ID: 20261207_timers_follow_access
Revises: 20261207_trash_retention
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

from teamboard.migrations.support import sibling

summaries = sibling("2026-12-07_task_summaries.py")

revision = "20261207_timers_follow_access"
down_revision = "20261207_trash_retention"
branch_labels = None
depends_on = None


#: Stops the running timers of ``(team_id, user_id)`` on projects outside ``visible``, each
#: with its ``time_entry.stopped`` event; returns how many.
STOP = """
create function tb_stop_timers_out_of_sight_of(
    member_team uuid, member uuid, visible uuid[]) returns integer
    language sql security definer set search_path = pg_catalog, public, pg_temp as $$
    with stopped as (
        update time_entry e set ended_at = greatest(now(), e.started_at)
        where e.team_id = member_team and e.user_id = member
          and e.ended_at is null and not (e.project_id = any(visible))
        returning e.team_id, e.id, e.project_id, e.task_id, e.started_at, e.ended_at
    ), appended as (
        insert into event (team_id, id, actor_id, kind, subject_id, project_id, payload)
        select s.team_id, tb_uuid7(), tb_current_user_id(), 'time_entry.stopped',
               s.task_id, s.project_id,
               jsonb_build_object(
                   'time_entry_id', s.id, 'task_id', s.task_id, 'ended_at', {ended_at},
                   'duration_seconds',
                   floor(extract(epoch from s.ended_at - s.started_at))::bigint,
                   'reason', 'project_out_of_sight')
        from stopped s
        returning 1
    )
    select count(*)::integer from appended
$$;
"""

TRIGGER = """
create function tb_stop_timers_out_of_sight() returns trigger
    language plpgsql security definer set search_path = pg_catalog, public, pg_temp as $$
begin
    perform tb_stop_timers_out_of_sight_of(new.team_id, new.user_id, new.project_ids);
    return null;
end
$$;
"""


def upgrade() -> None:
    op.execute(STOP.replace("{ended_at}", summaries.api_text("s.ended_at")))
    op.execute(TRIGGER)
    for function in (
        "tb_stop_timers_out_of_sight_of(uuid, uuid, uuid[])",
        "tb_stop_timers_out_of_sight()",
    ):
        op.execute(f"revoke all on function {function} from public")
    # A shrinking set, and a new one (a member back in the team after leaving it with a
    # timer running on a project they no longer see).
    op.execute(
        "create trigger team_member_visibility_stop_timers"
        " after update of project_ids on team_member_visibility for each row"
        " when (not (old.project_ids <@ new.project_ids))"
        " execute function tb_stop_timers_out_of_sight()"
    )
    op.execute(
        "create trigger team_member_visibility_stop_timers_on_insert"
        " after insert on team_member_visibility for each row"
        " execute function tb_stop_timers_out_of_sight()"
    )
    # Timers already stuck out of their user's sight stop now.
    op.execute(
        "select tb_stop_timers_out_of_sight_of(v.team_id, v.user_id, v.project_ids)"
        " from team_member_visibility v"
    )


def downgrade() -> None:
    op.execute(
        "drop trigger team_member_visibility_stop_timers_on_insert on team_member_visibility"
    )
    op.execute("drop trigger team_member_visibility_stop_timers on team_member_visibility")
    op.execute("drop function tb_stop_timers_out_of_sight()")
    op.execute("drop function tb_stop_timers_out_of_sight_of(uuid, uuid, uuid[])")

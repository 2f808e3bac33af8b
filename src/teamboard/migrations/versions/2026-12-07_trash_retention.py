"""Soft-deleted tasks and projects are deleted for good after a retention period, and the
worker removes stored attachment bytes.

A deleted task (or a deleted project with its tasks) stayed in the table for good, with its
comments, time entries and attachments, whose bytes were never removed: "deleted with their
task" only held for a task deleted through the app role, which no route does. The worker's
upkeep now calls two SECURITY DEFINER functions of the owner (as for the event partitions
and the idempotency records), which the worker role may execute; it has no privilege on the
tables themselves.

* ``tb_purge_deleted_work(retention_days, batch)`` deletes at most ``batch`` tasks deleted
  more than ``retention_days`` days ago, oldest first, then at most ``batch`` projects
  deleted as long ago that have no task left (a deleted project's tasks were deleted with
  it, so they go first, a batch at a time, and the project follows once empty). The rows
  that hang off them go by cascade; attachments queue their storage keys by trigger, in the
  same transaction. Rows locked by a concurrent restore are skipped (the next pass sees
  them again), and a restore waiting on a row this deletes finds nothing (404): the
  retention period is over. Task numbers are never reused (the project's counter goes on).
* ``tb_take_attachment_purges(batch)`` removes at most ``batch`` keys from that queue, of
  every team, and returns them: the worker deletes the objects in the same transaction, so
  a storage failure rolls the keys back into the queue (``teamboard.attachments.cleanup``).

``ix_task_deleted_at`` (deleted tasks only) finds the expired ones without reading the live.
It is built in the migration's transaction, as every migration here runs in one: writes to
``task`` wait for the build (a scan of the table; plan it on a large installation).

The purge checks its arguments itself (a retention of at least a day, a bounded batch): the
worker role's credentials cannot empty the trash at once. It runs one at a time (an advisory
lock; several workers run upkeep), and locks the teams it touches before their tasks, in the
order a team's deletion takes them.

Revision ID: 20261207_trash_retention
Revises: 20261207_private_managers
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

from teamboard.migrations.support import worker_role

revision = "20261207_trash_retention"
down_revision = "20261207_private_managers"
branch_labels = None
depends_on = None

PURGE = "tb_purge_deleted_work(integer, integer)"
TAKE = "tb_take_attachment_purges(integer)"


#: Upper bound of ``batch``: a pass stays a series of short transactions whatever it asks.
MAX_BATCH = 10_000


#: The purge, as ``upgrade`` installs it (later migrations derive theirs from it).
PURGE_FUNCTION = f"""
        create function tb_purge_deleted_work(retention_days integer, batch integer)
            returns table (tasks integer, projects integer)
            language plpgsql security definer set search_path = pg_catalog, public, pg_temp
            as $$
        declare
            cutoff timestamptz;
        begin
            if retention_days is null or retention_days < 1
               or batch is null or batch < 1 or batch > {MAX_BATCH} then
                raise exception 'tb_purge_deleted_work: retention_days >= 1 and batch'
                    ' between 1 and {MAX_BATCH}' using errcode = '22023';
            end if;
            tasks := 0;
            projects := 0;
            -- One purge at a time (several workers run upkeep): concurrent ones would
            -- update the same analytics rows in different orders.
            if not pg_try_advisory_xact_lock(hashtextextended('tb_purge_deleted_work', 0)) then
                return next;
                return;
            end if;
            cutoff := now() - make_interval(days => retention_days);
            -- The teams first, in id order, as a team's deletion takes its row before its
            -- tasks': the cascades below take the team again (analytics, visible sets).
            perform 1 from team where id in (
                select t.team_id from task t where t.deleted_at < cutoff
                order by t.deleted_at limit batch)
            order by id for share;
            with doomed as (
                select t.team_id, t.id from task t where t.deleted_at < cutoff
                order by t.deleted_at limit batch for update skip locked
            ), gone as (
                delete from task t using doomed d where t.team_id = d.team_id and t.id = d.id
                returning 1
            )
            select count(*)::integer into tasks from gone;
            perform 1 from team where id in (
                select p.team_id from project p where p.deleted_at < cutoff
                order by p.deleted_at limit batch)
            order by id for share;
            with doomed as (
                select p.team_id, p.id from project p
                where p.deleted_at < cutoff
                  and not exists (select 1 from task t
                                  where t.team_id = p.team_id and t.project_id = p.id)
                order by p.deleted_at limit batch for update skip locked
            ), gone as (
                delete from project p using doomed d where p.team_id = d.team_id and p.id = d.id
                returning 1
            )
            select count(*)::integer into projects from gone;
            return next;
        end
        $$;
        """


def upgrade() -> None:
    op.execute("create index ix_task_deleted_at on task (deleted_at) where deleted_at is not null")
    op.execute(PURGE_FUNCTION)
    op.execute(
        f"""
        create function tb_take_attachment_purges(batch integer) returns setof text
            language sql security definer set search_path = pg_catalog, public, pg_temp as $$
            delete from attachment_purge where (team_id, id) in (
                select team_id, id from attachment_purge order by created_at
                limit least(batch, {MAX_BATCH}) for update skip locked)
            returning storage_key
        $$;
        """
    )
    for function in (PURGE, TAKE):
        op.execute(f"revoke all on function {function} from public")
        op.execute(f"grant execute on function {function} to {worker_role()}")


def downgrade() -> None:
    op.execute(f"drop function {TAKE}")
    op.execute(f"drop function {PURGE}")
    op.execute("drop index ix_task_deleted_at")

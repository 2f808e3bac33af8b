"""Each member's visible projects are kept as a set: Row Level Security costs the same in a
team of 300 projects as in a team of one.

``tb_visible_project_ids()`` decides what a caller sees of projects, tasks and everything
that belongs to a project; every statement over those tables calls it once. It aggregated
the team's projects on every call: the team-visible ones (for a member who is not a guest)
and the caller's private ones. Measured on the 2-vCPU machine (pgbench, the app role, a
prepared task read by id): 118 µs with one project in the team, 177 µs with 301; the cost
grew with the team's projects, on every request.

The set is now stored per member (``team_member_visibility.project_ids``) and the function
reads one row. Triggers keep it exact in the writing transaction:

* a member joins or changes role: their set is recomputed;
* a project membership is added or removed: that member's set is recomputed;
* a team-visible project is created: it joins the set of every member who is not a guest;
* a project changes visibility (or id, which only the owner can do): every member's set is
  recomputed (a rare, admin action);
* a project is deleted: it leaves every set; ``project`` or ``project_member`` is truncated
  (the owner only): every set is recomputed.

What a set holds is exactly what the function computed before
(``tb_member_visible_projects``, the same query for an explicit member).

Concurrent writes to one team's
memberships and projects are serialized by a transaction-level advisory lock per team,
taken before a set is computed, and each computation runs in a statement that starts
after the lock is held: it sees whatever a transaction that held the lock committed, so two
concurrent writers (a project created while a member joins) cannot both miss each other.
This relies on READ COMMITTED, every teamboard transaction's level: a transaction of a
fixed snapshot would compute from that snapshot whatever it waited for, so the lock refuses
any other level. The lock is taken where the write happens, after the row locks the
transaction already holds: two transactions that each write to two teams' projects in
opposite orders (a GraphQL mutation batch can) may deadlock; PostgreSQL cancels one, which
rolls back whole and answers 409 ``conflict_retry``.

``teamboard db audit`` compares every stored set with a recomputation
(``visibility_drift``).

Revision ID: 20261206_visible_project_sets
Revises: 20261206_duration_doublings
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

from teamboard.migrations.support import app_role, sibling
from teamboard.ops import tenancy
from teamboard.ops.tenancy import CURRENT_TEAM, CURRENT_USER, DENY, Policies, secure_table

revision = "20261206_visible_project_sets"
down_revision = "20261206_duration_doublings"
branch_labels = None
depends_on = None

_DEFINER = "security definer set search_path = pg_catalog, public"

UPGRADE = f"""
create table team_member_visibility (
    team_id uuid not null,
    user_id uuid not null,
    project_ids uuid[] not null default '{{}}',
    constraint pk_team_member_visibility primary key (team_id, user_id),
    constraint fk_team_member_visibility_team_id_user_id_team_member
        foreign key (team_id, user_id) references team_member (team_id, user_id)
        on delete cascade
);

-- What ``member`` may see of ``team``'s projects: the team's projects unless a guest, and
-- the private ones they belong to (the body ``tb_visible_project_ids`` had, for a member
-- named explicitly). Empty for someone who is not a member.
create function tb_member_visible_projects(team uuid, member uuid) returns uuid[]
    language sql stable {_DEFINER} as $$
    select coalesce(array_agg(p.id order by p.id), '{{}}')
    from team_member m
    join project p on p.team_id = m.team_id
    where m.team_id = team and m.user_id = member
      and (
          (p.visibility = 'team' and m.role <> 'guest')
          or p.id in (select pm.project_id from project_member pm
                      where pm.team_id = team and pm.user_id = member)
      )
$$;

-- Serializes the writes that change a team's sets (see the module docstring). Refused above
-- READ COMMITTED: a transaction of a fixed snapshot would compute a set from that snapshot
-- whatever it waited for, and could store a project made private meanwhile.
create function tb_lock_team_visibility(team uuid) returns void
    language plpgsql volatile {_DEFINER} as $$
begin
    if current_setting('transaction_isolation') <> 'read committed' then
        raise exception 'memberships and projects are written at READ COMMITTED only'
            using errcode = 'feature_not_supported',
                  hint = 'the stored visible-project sets depend on it';
    end if;
    perform pg_advisory_xact_lock(hashtextextended('tb_visibility:' || team::text, 0));
end $$;

-- The member's set recomputed (nothing when they are no longer a member: the row went
-- with the membership).
create function tb_refresh_member_visibility(team uuid, member uuid) returns void
    language plpgsql volatile {_DEFINER} as $$
begin
    perform tb_lock_team_visibility(team);
    insert into team_member_visibility (team_id, user_id, project_ids)
    select m.team_id, m.user_id, tb_member_visible_projects(m.team_id, m.user_id)
    from team_member m where m.team_id = team and m.user_id = member
    on conflict (team_id, user_id) do update set project_ids = excluded.project_ids;
end $$;

create function tb_member_visibility_changed() returns trigger
    language plpgsql volatile {_DEFINER} as $$
begin
    perform tb_refresh_member_visibility(new.team_id, new.user_id);
    return null;
end $$;

create function tb_member_visibility_removed() returns trigger
    language plpgsql volatile {_DEFINER} as $$
begin
    perform tb_lock_team_visibility(old.team_id);
    return old;
end $$;

create function tb_project_member_visibility_changed() returns trigger
    language plpgsql volatile {_DEFINER} as $$
begin
    if tg_op in ('DELETE', 'UPDATE') then
        perform tb_refresh_member_visibility(old.team_id, old.user_id);
    end if;
    if tg_op in ('INSERT', 'UPDATE') then
        perform tb_refresh_member_visibility(new.team_id, new.user_id);
    end if;
    return null;
end $$;

create function tb_project_visibility_changed() returns trigger
    language plpgsql volatile {_DEFINER} as $$
begin
    if tg_op = 'DELETE' then
        perform tb_lock_team_visibility(old.team_id);
        update team_member_visibility v set project_ids = array_remove(v.project_ids, old.id)
        where v.team_id = old.team_id and old.id = any(v.project_ids);
    elsif tg_op = 'INSERT' then
        if new.visibility = 'team' then
            perform tb_lock_team_visibility(new.team_id);
            update team_member_visibility v set project_ids = v.project_ids || new.id
            from team_member m
            where v.team_id = new.team_id and m.team_id = v.team_id and m.user_id = v.user_id
              and m.role <> 'guest' and not (new.id = any(v.project_ids));
        end if;
    else
        perform tb_lock_team_visibility(new.team_id);
        update team_member_visibility v
        set project_ids = tb_member_visible_projects(v.team_id, v.user_id)
        where v.team_id = new.team_id;
    end if;
    return null;
end $$;

-- TRUNCATE (the owner's, never the app role's) fires no row trigger: every set is
-- recomputed. The truncated table's exclusive lock keeps other writers out meanwhile.
create function tb_visibility_truncated() returns trigger
    language plpgsql volatile {_DEFINER} as $$
begin
    update team_member_visibility v
    set project_ids = tb_member_visible_projects(v.team_id, v.user_id);
    return null;
end $$;

create trigger team_member_visibility_changed
    after insert or update of role on team_member
    for each row execute function tb_member_visibility_changed();
-- A membership's removal cascades to its set: it takes the team's lock first, like every
-- other write to the sets, so that it cannot wait on a set that a lock holder is updating
-- while that holder waits on it.
create trigger team_member_visibility_removed
    before delete on team_member
    for each row execute function tb_member_visibility_removed();
create trigger project_member_visibility_changed
    after insert or update or delete on project_member
    for each row execute function tb_project_member_visibility_changed();
create trigger project_visibility_created
    after insert on project
    for each row execute function tb_project_visibility_changed();
create trigger project_visibility_changed
    after update of visibility, id on project
    for each row when (old.visibility is distinct from new.visibility or old.id <> new.id)
    execute function tb_project_visibility_changed();
create trigger project_visibility_truncated
    after truncate on project
    for each statement execute function tb_visibility_truncated();
create trigger project_member_visibility_truncated
    after truncate on project_member
    for each statement execute function tb_visibility_truncated();
create trigger project_visibility_deleted
    after delete on project
    for each row execute function tb_project_visibility_changed();

insert into team_member_visibility (team_id, user_id, project_ids)
select m.team_id, m.user_id, tb_member_visible_projects(m.team_id, m.user_id)
from team_member m;
"""

#: One row read; no member row, no set: a caller who is not a member sees no project.
READ_SET = """
create or replace function tb_visible_project_ids() returns uuid[]
    language plpgsql stable security definer set search_path = pg_catalog, public
    as $$
    declare
        ids uuid[];
    begin
        select v.project_ids into ids from team_member_visibility v
        where v.team_id = tb_current_team_id() and v.user_id = tb_current_user_id();
        return coalesce(ids, '{}');
    end
    $$;
"""

_FUNCTIONS = (
    "tb_member_visible_projects(uuid, uuid)",
    "tb_lock_team_visibility(uuid)",
    "tb_refresh_member_visibility(uuid, uuid)",
    "tb_member_visibility_changed()",
    "tb_member_visibility_removed()",
    "tb_project_member_visibility_changed()",
    "tb_project_visibility_changed()",
    "tb_visibility_truncated()",
)


def upgrade() -> None:
    # The backfill reads every team's memberships and projects: as the owner, under no
    # policy (an owner that does not bypass Row Level Security fails here, instead of
    # storing empty sets).
    op.execute("set local row_security = off")
    op.execute(UPGRADE)
    op.execute("reset row_security")
    for function in _FUNCTIONS:
        op.execute(f"revoke all on function {function} from public")
    # A member reads their own set (nobody else's); only the triggers write.
    own_row = f"team_id = {CURRENT_TEAM} and user_id = {CURRENT_USER}"
    statements = secure_table(
        "team_member_visibility",
        Policies(own_row, DENY, DENY, DENY),
        app_role=app_role(),
        grants=("select",),
        touch=False,
    )
    tenancy.apply(op.execute, statements)
    op.execute(READ_SET)


def downgrade() -> None:
    sibling("2026-12-06_member_projects.py").upgrade()  # the function as it was
    op.execute(
        "drop trigger project_member_visibility_truncated on project_member;"
        " drop trigger project_visibility_truncated on project;"
        " drop trigger project_visibility_deleted on project;"
        " drop trigger project_visibility_changed on project;"
        " drop trigger project_visibility_created on project;"
        " drop trigger project_member_visibility_changed on project_member;"
        " drop trigger team_member_visibility_changed on team_member;"
        " drop trigger team_member_visibility_removed on team_member;"
        " drop table team_member_visibility;"
    )
    for function in reversed(_FUNCTIONS):
        op.execute(f"drop function {function}")

"""Counters behind the throughput, lead/cycle time and time-tracked dashboards, so that their
cost follows the period's length, not the team's activity.

Those three dashboards read every completion or time entry of their period: at 10M events
the busiest team's 90-day window holds 36,704 completions, and they took 30–78 ms (p95)
where the counter dashboards took 6–13 ms. Two rollups replace those reads:

* ``analytics_completion_node``, over *nodes*: aligned runs of 1, 4, 16, 64 and 256 local
  days (a node of ``span`` days starts a multiple of ``span`` days after 2000-01-03). Any
  period is the union of a few nodes (at most 15 for 90 days, 20 for a year;
  ``analytics.period.nodes``). A node holds completions per current assignee; lead and
  cycle times per logarithmic *bucket* (16 per doubling, ``tb_analytics_duration_bucket``)
  with the bucket's values kept sorted (``vals``) and counted per *step* (16 per bucket,
  ``steps``); and, per measure, all of it in one row (``dim`` ``*``: ``assignees`` or
  ``buckets``, and ``counts``). A dashboard reads a row per node, and for percentiles the
  rows of the few buckets holding the wanted ranks and the values of one step of each,
  however many completions the period holds, and the percentiles stay exact. Rows
  with ``project_id`` nil sum every project (for callers who see them all); the others are
  per project, under the project's visibility. A statement trigger on
  ``analytics_completion`` keeps them from the rows the fold writes (the fold is their only
  writer); a reset drops them with the completions.
* ``analytics_time_daily``: seconds and entries of finished time entries per local day of
  their start, project and user (``user_id`` nil: every user), in the team's *current* time
  zone. Statement triggers on ``time_entry`` keep it in the writing transaction (exact in
  every snapshot, no tail); a change of the team's zone re-buckets the team in that
  transaction (a writer takes a share lock on its team row first, so neither can miss the
  other).

Revision ID: 20261206_analytics_nodes
Revises: 20261206_visible_policies
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

from teamboard.migrations.support import app_role
from teamboard.ops import tenancy
from teamboard.ops.tenancy import DENY, IN_TEAM, Policies, project_visible_by_call, secure_table

revision = "20261206_analytics_nodes"
down_revision = "20261206_visible_policies"
branch_labels = None
depends_on = None

NIL = "'00000000-0000-0000-0000-000000000000'::uuid"
#: A node row's change in each of its bucket's 16 steps, from the rows ``d`` of a group.
STEP_DELTAS = (
    "array["
    + ", ".join(f"coalesce(sum(d.sign) filter (where d.step = {i}), 0)::integer" for i in range(16))
    + "]"
)
#: The advisory lock every fold holds (20261122_analytics).
FOLD_LOCK = 7_163_021_501
_DEFINER = "language plpgsql security definer set search_path = pg_catalog, public"

TABLES = """
create table analytics_completion_node (
    team_id uuid not null,
    measure text not null,
    span smallint not null,
    start date not null,
    project_id uuid not null,
    dim text not null,
    n bigint not null,
    vals float8[],
    steps integer[],
    assignees uuid[],
    buckets integer[],
    counts bigint[],
    updated_at timestamptz not null default now(),
    constraint pk_analytics_completion_node
        primary key (team_id, measure, span, start, project_id, dim) include (n),
    constraint ck_analytics_completion_node_measure
        check (measure in ('assignee', 'lead', 'cycle')),
    constraint ck_analytics_completion_node_span check (span in (1, 4, 16, 64, 256))
);

create table analytics_time_daily (
    team_id uuid not null,
    day date not null,
    project_id uuid not null,
    user_id uuid not null,
    seconds bigint not null,
    entries bigint not null,
    updated_at timestamptz not null default now(),
    constraint pk_analytics_time_daily primary key (team_id, day, project_id, user_id)
        include (seconds, entries)
);
-- One user's rows, or the per-project totals alone (user nil), over a range of days: in the
-- key's order a day holds every (project, user) pair of the team. (A partial index of the
-- totals would not do: under Row Level Security the planner did not use it.)
create index ix_analytics_time_daily_team_id_user_id_day
    on analytics_time_daily (team_id, user_id, day, project_id) include (seconds, entries);
"""

FUNCTIONS = f"""
-- Durations on a logarithmic scale, 256 steps per doubling (each about 0.27 % wide):
-- monotonic, so every value of a step lies between those of the steps around it. A
-- *bucket* is 16 consecutive steps (``fine / 16``, about 4.4 % wide); ``fine % 16`` is the
-- step within it.
create function tb_analytics_duration_fine(seconds float8) returns integer
    language sql immutable parallel safe set search_path = pg_catalog as $$
select floor(ln(1 + greatest(seconds, 0)) / ln(2) * 256)::integer
$$;

create function tb_analytics_duration_bucket(seconds float8) returns integer
    language sql immutable parallel safe set search_path = pg_catalog, public as $$
select tb_analytics_duration_fine(seconds) / 16
$$;

-- (base + plus) - minus, as multisets, sorted; NULL when all three are NULL.
create function tb_analytics_multiset(base float8[], plus float8[], minus float8[])
    returns float8[]
    language sql immutable parallel safe set search_path = pg_catalog as $$
select case when base is null and plus is null and minus is null then null else array(
    select v from (
        select unnest(coalesce(base, '{{}}') || coalesce(plus, '{{}}'))
        except all
        select unnest(coalesce(minus, '{{}}'))
    ) x (v) order by v) end
$$;

-- Element-wise sum of two arrays of step counts (NULL when both are NULL).
create function tb_analytics_add_steps(a integer[], b integer[]) returns integer[]
    language sql immutable parallel safe set search_path = pg_catalog as $$
select case when a is null and b is null then null else array(
    select coalesce(x, 0) + coalesce(y, 0)
    from unnest(coalesce(a, '{{}}'), coalesce(b, '{{}}')) with ordinality u (x, y, i)
    order by i) end
$$;

-- Add the rows ``plus`` and subtract the rows ``minus`` of analytics_completion from the
-- nodes. An update's unchanged rows cancel out first. The fold is the only writer (it holds
-- the fold lock), so existing nodes are updated and missing ones inserted without races.
create function tb_analytics_count_completions(
    plus analytics_completion[], minus analytics_completion[]
) returns void {_DEFINER} as $$
declare
    teams uuid[];
    measures text[];
    spans smallint[];
    starts date[];
    projects uuid[];
begin
    with changed as (
        select p.*, 1 as sign from unnest(plus) p
        union all
        select m.*, -1 from unnest(minus) m
    ), items as (
        select c.team_id, c.project_id, c.completed_at, i.measure, i.dim, i.v, c.sign
        from changed c
        cross join lateral (
            select 'assignee', coalesce(a::text, ''), null::float8
            from unnest(case when cardinality(c.assignee_ids) = 0 then '{{null}}'::uuid[]
                             else c.assignee_ids end) a
            union all
            select 'lead', tb_analytics_duration_bucket(c.lead_seconds)::text, c.lead_seconds
            where c.lead_seconds is not null
            union all
            select 'cycle', tb_analytics_duration_bucket(c.cycle_seconds)::text,
                   c.cycle_seconds
            where c.cycle_seconds is not null
        ) i (measure, dim, v)
    ), net as (
        -- Inserts (a fold's new completions, a backfill) have nothing to cancel.
        select team_id, project_id, completed_at, measure, dim, v, sign from items
        where cardinality(minus) = 0
        union all
        select x.*, 1 from (
            select team_id, project_id, completed_at, measure, dim, v from items where sign > 0
            except all
            select team_id, project_id, completed_at, measure, dim, v from items where sign < 0
        ) x where cardinality(minus) > 0
        union all
        select x.*, -1 from (
            select team_id, project_id, completed_at, measure, dim, v from items where sign < 0
            except all
            select team_id, project_id, completed_at, measure, dim, v from items where sign > 0
        ) x where cardinality(minus) > 0
    ), dated as (
        select n.*, (n.completed_at at time zone s.time_zone)::date - date '2000-01-03' as dn,
               tb_analytics_duration_fine(n.v) % 16 as step
        from net n join analytics_state s on s.team_id = n.team_id
    ), agg as (
        select d.team_id, d.measure, sp.span,
               date '2000-01-03' + (d.dn - ((d.dn % sp.span) + sp.span) % sp.span) as start,
               pr.project_id, d.dim, sum(d.sign) as n,
               array_agg(d.v order by d.v) filter (where d.sign > 0 and d.v is not null)
                   as plus,
               array_agg(d.v) filter (where d.sign < 0 and d.v is not null) as minus,
               case when d.measure <> 'assignee' then {STEP_DELTAS} end as steps
        from dated d
        cross join (values (1), (4), (16), (64), (256)) sp (span)
        cross join lateral (values (d.project_id), ({NIL})) pr (project_id)
        group by 1, 2, 3, 4, 5, 6
    ), updated as (
        update analytics_completion_node r
        set n = r.n + a.n, vals = tb_analytics_multiset(r.vals, a.plus, a.minus),
            steps = tb_analytics_add_steps(r.steps, a.steps), updated_at = now()
        from agg a
        where r.team_id = a.team_id and r.measure = a.measure and r.span = a.span
          and r.start = a.start and r.project_id = a.project_id and r.dim = a.dim
        returning r.team_id, r.measure, r.span, r.start, r.project_id, r.dim
    ), inserted as (
        insert into analytics_completion_node (team_id, measure, span, start, project_id, dim,
                                               n, vals, steps)
        select a.team_id, a.measure, a.span, a.start, a.project_id, a.dim, a.n,
               case when a.minus is null then a.plus  -- sorted already
                    else tb_analytics_multiset(null, a.plus, a.minus) end,
               a.steps
        from agg a
        where not exists (
            select 1 from updated u
            where u.team_id = a.team_id and u.measure = a.measure and u.span = a.span
              and u.start = a.start and u.project_id = a.project_id and u.dim = a.dim)
        returning team_id, measure, span, start, project_id
    )
    select array_agg(team_id), array_agg(measure), array_agg(span), array_agg(start),
           array_agg(project_id)
    into teams, measures, spans, starts, projects
    from (
        select team_id, measure, span, start, project_id from updated
        union
        select team_id, measure, span, start, project_id from inserted
    ) x;
    -- Each changed node's whole measure in one row (dim '*'): the assignees (nil: none) or
    -- the bucket numbers, and their counts, for dashboards to read a row per node instead
    -- of a row per assignee or bucket.
    with summary as (
        select k.team_id, k.measure, k.span, k.start, k.project_id,
               coalesce(sum(r.n), 0) as n,
               array_agg(coalesce(nullif(r.dim, '')::uuid, {NIL}) order by r.dim)
                   filter (where r.n <> 0 and k.measure = 'assignee') as assignees,
               array_agg(r.dim::integer order by r.dim::integer)
                   filter (where r.n <> 0 and k.measure <> 'assignee') as buckets,
               array_agg(r.n order by case when k.measure = 'assignee' then r.dim end,
                         case when k.measure <> 'assignee' then r.dim::integer end)
                   filter (where r.n <> 0) as counts
        from unnest(teams, measures, spans, starts, projects)
            k (team_id, measure, span, start, project_id)
        left join analytics_completion_node r
            on r.team_id = k.team_id and r.measure = k.measure and r.span = k.span
           and r.start = k.start and r.project_id = k.project_id and r.dim <> '*'
        group by 1, 2, 3, 4, 5
    )
    insert into analytics_completion_node as r (team_id, measure, span, start, project_id, dim,
                                                n, assignees, buckets, counts)
    select team_id, measure, span, start, project_id, '*', n,
           case when measure = 'assignee' then coalesce(assignees, '{{}}') end,
           case when measure <> 'assignee' then coalesce(buckets, '{{}}') end,
           coalesce(counts, '{{}}')
    from summary
    on conflict (team_id, measure, span, start, project_id, dim) do update
    set n = excluded.n, assignees = excluded.assignees, buckets = excluded.buckets,
        counts = excluded.counts, updated_at = now();
end $$;

-- The completion trigger. A reset forgets the team's state, then its nodes, then its
-- completions: their deletion has nothing left to subtract from.
create function tb_analytics_completion_changed() returns trigger {_DEFINER} as $$
begin
    if tg_op = 'INSERT' then
        perform tb_analytics_count_completions(
            array(select r::analytics_completion from new_rows r), '{{}}');
    elsif tg_op = 'DELETE' then
        if exists (
            select 1 from analytics_state s where s.team_id in (select team_id from old_rows)
        ) then
            perform tb_analytics_count_completions(
                '{{}}', array(select r::analytics_completion from old_rows r));
        end if;
    else
        perform tb_analytics_count_completions(
            array(select r::analytics_completion from new_rows r),
            array(select r::analytics_completion from old_rows r));
    end if;
    return null;
end $$;

-- Add ``plus`` and subtract ``minus`` (rows of time_entry) in the team's current zone. The
-- share lock on the team row orders this against a change of its zone (which re-buckets
-- the team: tb_analytics_time_rezone): whichever comes second sees the other.
create function tb_analytics_count_time(plus time_entry[], minus time_entry[])
    returns void {_DEFINER} as $$
begin
    with changed as (
        select p.team_id, p.project_id, p.user_id, p.started_at, p.ended_at, 1 as sign
        from unnest(plus) p where p.ended_at is not null
        union all
        select m.team_id, m.project_id, m.user_id, m.started_at, m.ended_at, -1
        from unnest(minus) m where m.ended_at is not null
    ), zones as (
        select t.id, t.time_zone from team t
        where t.id in (select team_id from changed) order by t.id for share
    ), agg as (
        select c.team_id, (c.started_at at time zone z.time_zone)::date as day, c.project_id,
               u.user_id,
               sum(c.sign * extract(epoch from c.ended_at - c.started_at)::bigint) as seconds,
               sum(c.sign) as entries
        from changed c join zones z on z.id = c.team_id
        cross join lateral (values (c.user_id), ({NIL})) u (user_id)
        group by 1, 2, 3, 4
        having sum(c.sign) <> 0
            or sum(c.sign * extract(epoch from c.ended_at - c.started_at)::bigint) <> 0
    )
    insert into analytics_time_daily as r (team_id, day, project_id, user_id, seconds, entries)
    select team_id, day, project_id, user_id, seconds, entries from agg
    order by team_id, day, project_id, user_id
    on conflict (team_id, day, project_id, user_id) do update
    set seconds = r.seconds + excluded.seconds, entries = r.entries + excluded.entries,
        updated_at = now();
end $$;

-- Before a statement on time_entry by a request, its team row, share-locked before any
-- entry row: a team deletion (which locks the team, then the entries through its cascade)
-- cannot deadlock with it. Cascades and owner writes have no context: the statement
-- trigger locks then.
create function tb_analytics_time_entry_lock_team() returns trigger {_DEFINER} as $$
begin
    perform 1 from team t where t.id = tb_current_team_id() for share;
    return null;
end $$;

create function tb_analytics_time_entry_changed() returns trigger {_DEFINER} as $$
begin
    if tg_op = 'INSERT' then
        perform tb_analytics_count_time(array(select r::time_entry from new_rows r), '{{}}');
    elsif tg_op = 'DELETE' then
        perform tb_analytics_count_time('{{}}', array(select r::time_entry from old_rows r));
    else
        perform tb_analytics_count_time(
            array(select r::time_entry from new_rows r),
            array(select r::time_entry from old_rows r));
    end if;
    return null;
end $$;

-- Every finished entry of ``p_team`` (all teams: NULL) counted again in its current zone.
-- The team rows are locked first, against writers (they share-lock them): none can add to
-- a counter between the deletion and the count.
create function tb_analytics_time_rebuild(p_team uuid) returns void {_DEFINER} as $$
begin
    perform 1 from team t where p_team is null or t.id = p_team order by t.id
    for no key update;
    delete from analytics_time_daily where p_team is null or team_id = p_team;
    insert into analytics_time_daily (team_id, day, project_id, user_id, seconds, entries)
    select e.team_id, (e.started_at at time zone t.time_zone)::date, e.project_id, u.user_id,
           sum(extract(epoch from e.ended_at - e.started_at)::bigint), count(*)
    from time_entry e join team t on t.id = e.team_id
    cross join lateral (values (e.user_id), ({NIL})) u (user_id)
    where e.ended_at is not null and (p_team is null or e.team_id = p_team)
    group by 1, 2, 3, 4;
end $$;

create function tb_analytics_time_rezone() returns trigger {_DEFINER} as $$
begin
    perform tb_analytics_time_rebuild(new.id);
    return null;
end $$;
"""

#: What ``tb_analytics_reset`` deletes, in order: before this migration, and now (the state
#: first, so that the completions' trigger skips their deletion; the nodes are deleted whole;
#: the time counters are not folded, so a reset leaves them).
RESET_BEFORE = (
    "analytics_daily",
    "analytics_team_daily",
    "analytics_actor_daily",
    "analytics_team_actor",
    "analytics_actor_last",
    "analytics_flow_total",
    "analytics_task",
    "analytics_completion",
    "analytics_task_link",
    "analytics_state",
)
RESET_NOW = (
    "analytics_state",
    "analytics_completion_node",
    "analytics_completion",
    *(table for table in RESET_BEFORE if table not in ("analytics_state", "analytics_completion")),
)


def reset_functions(tables: tuple[str, ...], *, now: bool) -> str:
    """``tb_analytics_reset`` deleting ``tables`` in order, and ``tb_analytics_forget_teams``
    (now: waiting for a running fold, which could still write rows of the deleted teams, and
    forgetting their time counters too)."""
    deletes = "\n".join(
        f"    delete from {table} where p_team is null or team_id = p_team;" for table in tables
    )
    wait = f"    perform pg_advisory_xact_lock({FOLD_LOCK});\n" if now else ""
    forget_time = (
        "    delete from analytics_time_daily where team_id in (select id from gone);\n"
        if now
        else ""
    )
    return f"""
create or replace function tb_analytics_reset(p_team uuid) returns void
    language plpgsql set search_path = pg_catalog, public as $$
begin
{deletes}
end $$;

create or replace function tb_analytics_forget_teams() returns trigger {_DEFINER} as $$
begin
{wait}    perform tb_analytics_reset(gone.id) from gone;
{forget_time}    return null;
end $$;
"""


TRIGGERS = """
create trigger analytics_completion_insert_nodes after insert on analytics_completion
    referencing new table as new_rows
    for each statement execute function tb_analytics_completion_changed();
create trigger analytics_completion_update_nodes after update on analytics_completion
    referencing new table as new_rows old table as old_rows
    for each statement execute function tb_analytics_completion_changed();
create trigger analytics_completion_delete_nodes after delete on analytics_completion
    referencing old table as old_rows
    for each statement execute function tb_analytics_completion_changed();
create trigger time_entry_lock_team before insert or update or delete on time_entry
    for each statement execute function tb_analytics_time_entry_lock_team();
create trigger time_entry_insert_analytics after insert on time_entry
    referencing new table as new_rows
    for each statement execute function tb_analytics_time_entry_changed();
create trigger time_entry_update_analytics after update on time_entry
    referencing new table as new_rows old table as old_rows
    for each statement execute function tb_analytics_time_entry_changed();
create trigger time_entry_delete_analytics after delete on time_entry
    referencing old table as old_rows
    for each statement execute function tb_analytics_time_entry_changed();
create trigger team_rezone_time after update of time_zone on team
    for each row when (old.time_zone is distinct from new.time_zone)
    execute function tb_analytics_time_rezone();
"""

#: What exists already: the nodes of every folded completion, and every finished entry.
BACKFILL = f"""
do $$
declare
    t uuid;
begin
    perform pg_advisory_xact_lock({FOLD_LOCK});
    for t in select distinct team_id from analytics_completion loop
        perform tb_analytics_count_completions(
            array(select c from analytics_completion c where c.team_id = t), '{{}}');
    end loop;
end $$;
select tb_analytics_time_rebuild(null);
"""

_FUNCTION_NAMES = (
    "tb_analytics_duration_bucket(float8)",
    "tb_analytics_duration_fine(float8)",
    "tb_analytics_multiset(float8[], float8[], float8[])",
    "tb_analytics_add_steps(integer[], integer[])",
    "tb_analytics_count_completions(analytics_completion[], analytics_completion[])",
    "tb_analytics_completion_changed()",
    "tb_analytics_count_time(time_entry[], time_entry[])",
    "tb_analytics_time_entry_lock_team()",
    "tb_analytics_time_entry_changed()",
    "tb_analytics_time_rebuild(uuid)",
    "tb_analytics_time_rezone()",
)


def _policies() -> list[tuple[str, Policies]]:
    whole_team = f"(project_id = {NIL} and (select tb_analytics_sees_all()))"
    return [
        (
            "analytics_completion_node",
            Policies(
                f"{IN_TEAM} and ({whole_team}"
                " or project_id = any((select tb_visible_project_ids())::uuid[]))",
                DENY,
                DENY,
                DENY,
            ),
        ),
        ("analytics_time_daily", Policies(project_visible_by_call(), DENY, DENY, DENY)),
    ]


def upgrade() -> None:
    role = app_role()
    op.execute(TABLES)
    op.execute(FUNCTIONS)
    op.execute(reset_functions(RESET_NOW, now=True))
    for function in _FUNCTION_NAMES:
        op.execute(f"revoke all on function {function} from public")
    # The dashboards bucket the tail's durations as the nodes do.
    for function in ("tb_analytics_duration_bucket(float8)", "tb_analytics_duration_fine(float8)"):
        op.execute(f"grant execute on function {function} to {role}")
    for table, policies in _policies():
        statements = secure_table(table, policies, app_role=role, grants=("select",), touch=False)
        tenancy.apply(op.execute, statements)
    op.execute(TRIGGERS)
    op.execute(BACKFILL)
    op.execute("analyze analytics_completion_node, analytics_time_daily")


def downgrade() -> None:
    op.execute("drop trigger if exists team_rezone_time on team")
    op.execute("drop trigger if exists time_entry_lock_team on time_entry")
    for command in ("insert", "update", "delete"):
        op.execute(f"drop trigger if exists time_entry_{command}_analytics on time_entry")
        op.execute(
            f"drop trigger if exists analytics_completion_{command}_nodes on analytics_completion"
        )
    op.execute(reset_functions(RESET_BEFORE, now=False))
    for function in _FUNCTION_NAMES:
        op.execute(f"drop function if exists {function}")
    op.execute("drop table if exists analytics_completion_node, analytics_time_daily")

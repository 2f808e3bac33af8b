"""Analytics: the team's time zone, rollup tables under Row Level Security maintained
incrementally from the event log, the fact views shared by the fold and the dashboards, and
the event indexes behind the rollup tail, the consumer and custom-event drill-down.

Exactness rests on one rule (DESIGN §4): the fold takes the events of transactions whose id
is below the *watermark*, the ``xmin`` of a snapshot taken when the fold starts. Every
transaction below it has ended, so an event that commits later always has an id at or above
it: nothing is skipped, however late its transaction commits. Dashboards read, in ONE
statement (one snapshot), the rollups and the *tail*: the visible events whose transaction id
is at or above the watermark they see in that same snapshot. Each event is then counted
exactly once. ``event.tx_id`` is filled by its default (``pg_current_xact_id()``, the
top-level transaction) and the app role may no longer supply it.

* ``team.time_zone`` (IANA name; the API checks it against ``pg_timezone_names``, the
  CHECK against what ``AT TIME ZONE`` accepts). Rollups bucket days in the zone recorded in
  ``analytics_state``; when it differs from the team's (a change not folded yet) dashboards
  read raw events only, and the fold re-buckets the team.
* Rollup tables (not materialized views, which bypass RLS): ``analytics_daily`` (additive
  per-day counters: events by kind, tasks created, completions, status-category flow),
  ``analytics_actor_daily`` (distinct actors), ``analytics_flow_total``,
  ``analytics_task`` (first creation and start per task), ``analytics_completion`` (one row
  per completion) and ``analytics_task_link`` (assignees and labels, last writer wins by
  ``(occurred_at, event id)``). Their keys are natural keys leading with ``team_id``. Rows
  outside any project use the nil UUID as ``project_id`` (a key column cannot be NULL);
  they are visible like project-less events: to members, not to guests. Only the fold (as
  the owner) writes them; the app role may read them.
* Fact views (``security_invoker``, so the reader's policies apply): the classification of
  events into status transitions, flow deltas and task links, written once and used by the
  fold and by the dashboards' tail.
* ``tb_analytics_refresh()``: the incremental fold, SECURITY DEFINER so the worker may run
  it as the app role; one at a time (advisory lock), several workers may call it.

Revision ID: 20261122_analytics
Revises: 20261122_events
Create Date: 2026-11-22
"""

from __future__ import annotations

from alembic import op

from teamboard.migrations.support import app_role
from teamboard.ops import tenancy
from teamboard.ops.tenancy import (
    CURRENT_ROLE,
    CURRENT_USER,
    DENY,
    IN_TEAM,
    Policies,
    project_visible_by_call,
    secure_table,
)

revision = "20261122_analytics"
down_revision = "20261122_events"
branch_labels = None
depends_on = None

#: ``project_id`` of rollup rows that belong to no project.
NO_PROJECT = "00000000-0000-0000-0000-000000000000"
#: The advisory lock held by a fold (refresh or rebuild): one fold at a time.
FOLD_LOCK = 7_163_021_501
EVENT_COLUMNS = "team_id, id, occurred_at, actor_id, kind, subject_id, project_id, payload"

HELPERS = """
create function tb_is_time_zone(name text) returns boolean
    language plpgsql stable set search_path = pg_catalog as $$
begin
    perform pg_catalog.now() at time zone name;
    return pg_catalog.length(name) between 1 and 64;
exception when invalid_parameter_value then
    return false;
end $$;

-- Text to uuid, NULL when it is not one (payload values are not trusted to be well formed).
create function tb_uuid(value text) returns uuid
    language sql immutable parallel safe as $$
    select case when value ~ '^[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$'
                then value::uuid end
$$;

-- A UUIDv7 (RFC 9562: milliseconds since the epoch, then random bits), as teamboard.kit.ids
-- makes them, for rows the database creates in bulk (custom event batches).
create function tb_uuid7() returns uuid
    language sql volatile parallel safe as $$
    select encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid()) placing
        substring(int8send(floor(extract(epoch from clock_timestamp()) * 1000)::bigint)
        from 3) from 1 for 6), 52, 1), 53, 1), 'hex')::uuid
$$;

-- The value when it is a JSON array, else NULL (so jsonb_array_elements never raises).
create function tb_json_array(value jsonb) returns jsonb
    language sql immutable parallel safe as $$
    select case when jsonb_typeof(value) = 'array' then value end
$$;

alter table team add column time_zone text not null default 'UTC';
alter table team add constraint ck_team_time_zone check (tb_is_time_zone(time_zone));
"""

EVENT_INDEXES = """
-- The dashboards' tail reads a team's events at or above the watermark through the events
-- migration's (team_id, tx_id, seq) index, and the fold every team's events in a
-- transaction-id range through its (tx_id, seq) index. (A BRIN index would cost less on
-- writes, but until its new page ranges are summarized it returns all of them: after a
-- bulk load every fold would read the whole load again.)
-- Custom events: drill-down by kind and time, covering what the list and its policy read.
create index ix_event_team_id_kind_occurred_at_custom
    on event (team_id, kind, occurred_at, id) include (project_id, actor_id)
    where kind like 'custom.%';
"""

# Appending events in batches (custom events: up to 1,000 rows a statement) paid three
# calls per row that a batch does not need; one statement trigger now does per statement
# and team what they did per row:
# * the foreign key to team, whose check ran a query and took a row lock on the team per
#   row: the statement's teams are locked FOR KEY SHARE (the lock that check took: a
#   concurrent deletion of the team waits for this transaction, or this statement sees
#   the deletion and fails like the check did); a deleted team's events go with it, as
#   the key's ON DELETE CASCADE did;
# * the wake-up NOTIFY, now once per team and statement;
# and the team_id filler is called only for a row without a team_id, which it fills exactly
# as the tenancy helper's trigger does.
EVENT_TRIGGERS = """
alter table event drop constraint fk_event_team_id_team;

create function tb_event_appended() returns trigger
    language plpgsql security definer set search_path = pg_catalog, public as $$
declare
    locked uuid[];
    missing uuid;
begin
    -- Locked and checked in one statement (one snapshot), as the key's check did.
    select coalesce(array_agg(l.id), '{}') into locked from (
        select t.id from team t where t.id in (select distinct a.team_id from appended a)
        for key share of t
    ) l;
    select a.team_id into missing from (select distinct team_id from appended) a
    where a.team_id <> all(locked) limit 1;
    if found then
        raise foreign_key_violation using
            message = 'insert on table "event" violates foreign key constraint'
                      ' "fk_event_team_id_team"',
            detail = format('Key (team_id)=(%s) is not present in table "team".', missing),
            table = 'event', constraint = 'fk_event_team_id_team';
    end if;
    perform pg_notify('tb_event', t.team_id::text)
    from (select distinct team_id from appended) t;
    return null;
end $$;
drop trigger event_notify on event;
create trigger event_appended after insert on event referencing new table as appended
    for each statement execute function tb_event_appended();
drop trigger event_fill_team_id on event;
create trigger event_fill_team_id before insert on event
    for each row when (new.team_id is null) execute function tb_fill_team_id();

create function tb_event_forget_teams() returns trigger
    language plpgsql security definer set search_path = pg_catalog, public as $$
begin
    delete from event e where e.team_id in (select g.id from gone g);
    return null;
end $$;
create trigger team_forget_events after delete on team referencing old table as gone
    for each statement execute function tb_event_forget_teams();
"""

EVENT_TRIGGERS_DOWN = """
drop trigger team_forget_events on team;
drop function tb_event_forget_teams();
drop trigger event_appended on event;
drop function tb_event_appended();
create trigger event_notify after insert on event
    for each row execute function tb_notify_event();
drop trigger event_fill_team_id on event;
create trigger event_fill_team_id before insert on event
    for each row execute function tb_fill_team_id();
alter table event add constraint fk_event_team_id_team
    foreign key (team_id) references team (id) on delete cascade;
"""

TABLES = """
create table analytics_state (
    team_id uuid not null,
    time_zone text not null,
    updated_at timestamptz not null default now(),
    constraint pk_analytics_state primary key (team_id),
    constraint fk_analytics_state_team_id_team foreign key (team_id)
        references team (id) on delete cascade
);

create table analytics_watermark (
    id smallint not null,
    tx_id xid8 not null,
    folded_at timestamptz,
    updated_at timestamptz not null default now(),
    constraint pk_analytics_watermark primary key (id),
    constraint ck_analytics_watermark_single check (id = 1)
);
insert into analytics_watermark (id, tx_id) values (1, '0');

create table analytics_daily (
    team_id uuid not null,
    metric text not null,
    day date not null,
    project_id uuid not null,
    dim text not null,
    value bigint not null,
    updated_at timestamptz not null default now(),
    constraint pk_analytics_daily primary key (team_id, metric, day, project_id, dim)
        include (value),
    constraint ck_analytics_daily_metric
        check (metric in ('events', 'created', 'completed', 'flow'))
);

-- The same counters summed over the projects, for callers who see every project of the
-- team (most members, and the whole team for a dashboard): a tenth of the rows to read.
create table analytics_team_daily (
    team_id uuid not null,
    metric text not null,
    day date not null,
    dim text not null,
    value bigint not null,
    updated_at timestamptz not null default now(),
    constraint pk_analytics_team_daily primary key (team_id, metric, day, dim) include (value),
    constraint ck_analytics_team_daily_metric
        check (metric in ('events', 'created', 'completed', 'flow', 'actors', 'last_seen'))
);

-- Distinct actors of the whole team: each (local day, actor) once, behind the per-day
-- 'actors' counters of analytics_team_daily, and each actor's last local day with an
-- event, behind its 'last_seen' counters (how many actors were last seen that day). A
-- period ending on or after every actor's last day has as many distinct actors as the
-- 'last_seen' counters of its days add up to: the actors dashboard of a window ending
-- today reads a counter per day, however many actors and events the period holds.
create table analytics_team_actor (
    team_id uuid not null,
    day date not null,
    actor text not null,
    updated_at timestamptz not null default now(),
    constraint pk_analytics_team_actor primary key (team_id, day, actor)
);
create table analytics_actor_last (
    team_id uuid not null,
    actor text not null,
    day date not null,
    updated_at timestamptz not null default now(),
    constraint pk_analytics_actor_last primary key (team_id, actor)
);

create table analytics_actor_daily (
    team_id uuid not null,
    day date not null,
    kind text not null,
    project_id uuid not null,
    actor text not null,
    events bigint not null,
    updated_at timestamptz not null default now(),
    constraint pk_analytics_actor_daily primary key (team_id, day, kind, project_id, actor)
);

create table analytics_flow_total (
    team_id uuid not null,
    project_id uuid not null,
    category text not null,
    tasks bigint not null,
    updated_at timestamptz not null default now(),
    constraint pk_analytics_flow_total primary key (team_id, project_id, category)
);

create table analytics_task (
    team_id uuid not null,
    task_id uuid not null,
    project_id uuid not null,
    created_at timestamptz,
    started_at timestamptz,
    updated_at timestamptz not null default now(),
    constraint pk_analytics_task primary key (team_id, task_id)
);
create index ix_analytics_task_team_id_created_at
    on analytics_task (team_id, created_at) include (task_id, project_id);

-- One row per completion, with what the lead time, cycle time and throughput dashboards
-- need of its task (kept current by the fold for every task an event of the fold touches):
-- those dashboards read one index range, with no lookup per completion.
create table analytics_completion (
    team_id uuid not null,
    event_id uuid not null,
    task_id uuid not null,
    project_id uuid not null,
    completed_at timestamptz not null,
    lead_seconds float8,
    cycle_seconds float8,
    assignee_ids uuid[] not null default '{}',
    updated_at timestamptz not null default now(),
    constraint pk_analytics_completion primary key (team_id, event_id)
);
create index ix_analytics_completion_team_id_completed_at
    on analytics_completion (team_id, completed_at)
    include (task_id, project_id, lead_seconds, cycle_seconds, assignee_ids);
create index ix_analytics_completion_team_id_task_id on analytics_completion (team_id, task_id);

create table analytics_task_link (
    team_id uuid not null,
    task_id uuid not null,
    kind text not null,
    target_id uuid not null,
    project_id uuid not null,
    active boolean not null,
    changed_at timestamptz not null,
    event_id uuid not null,
    updated_at timestamptz not null default now(),
    constraint pk_analytics_task_link primary key (team_id, task_id, kind, target_id),
    constraint ck_analytics_task_link_kind check (kind in ('assignee', 'label'))
);
create index ix_analytics_task_link_team_id_kind_target_id
    on analytics_task_link (team_id, kind, target_id, task_id) include (active);

-- Finished time entries by start, covering the time-tracked dashboards.
create index ix_time_entry_team_id_started_at_finished
    on time_entry (team_id, started_at) include (ended_at, user_id, project_id, task_id)
    where ended_at is not null;
"""

# One row per event, with the status categories of a workflow transition (task created in,
# updated to, or moved to a status). The categories come from the status rows; a task.created
# event without a status in its payload (older events) takes the task's current status.
VIEWS = f"""
create view analytics_event_fact with (security_invoker = true) as
select e.team_id, e.id, e.occurred_at, e.tx_id, e.kind, e.subject_id,
       coalesce(e.project_id, '{NO_PROJECT}'::uuid) as project_id,
       case when e.kind like 'custom.%' and jsonb_typeof(e.payload -> 'actor') = 'string'
            then 'x:' || (e.payload ->> 'actor') else e.actor_id::text end as actor,
       s_from.category as from_category,
       s_to.category as to_category
from event e
left join status s_from
    on s_from.team_id = e.team_id
   and s_from.id = tb_uuid(case e.kind
        when 'task.updated' then e.payload #>> '{{changes,status_id,from}}'
        when 'task.moved' then e.payload ->> 'from_status_id' end)
left join status s_to
    on s_to.team_id = e.team_id
   and s_to.id = coalesce(
        tb_uuid(case e.kind
            when 'task.created' then e.payload ->> 'status_id'
            when 'task.updated' then e.payload #>> '{{changes,status_id,to}}'
            when 'task.moved' then e.payload ->> 'to_status_id' end),
        case when e.kind = 'task.created' and not e.payload ? 'status_id' then
            (select t.status_id from task t where t.team_id = e.team_id and t.id = e.subject_id)
        end);

-- Tasks entering (+1) and leaving (-1) status categories: workflow transitions, and
-- deletions and restorations (of the task and the subtasks listed with it, counted in the
-- category of their current status).
create view analytics_flow_fact with (security_invoker = true) as
select f.team_id, f.id, f.occurred_at, f.tx_id, f.project_id, c.category, c.delta
from analytics_event_fact f
cross join lateral (values (f.from_category, -1), (f.to_category, 1)) as c (category, delta)
where f.kind in ('task.created', 'task.updated', 'task.moved')
  and f.from_category is distinct from f.to_category and c.category is not null
union all
select e.team_id, e.id, e.occurred_at, e.tx_id, coalesce(e.project_id, '{NO_PROJECT}'::uuid),
       x.category, case e.kind when 'task.deleted' then -1 else 1 end
from event e
cross join lateral (
    -- Evaluated per event (offset 0): the event stays the outer side of every plan, even
    -- a generic one that misjudges how many events a parameterized range returns.
    select s.category
    from (
        select e.subject_id as task_id
        union all
        select tb_uuid(v)
        from jsonb_array_elements_text(tb_json_array(e.payload -> 'subtask_ids')) v
    ) as ids
    join task t on t.team_id = e.team_id and t.id = ids.task_id
    join status s on s.team_id = t.team_id and s.id = t.status_id
    offset 0
) as x
where e.kind in ('task.deleted', 'task.restored');

-- Assignee and label links set (active) or removed by an event.
create view analytics_link_fact with (security_invoker = true) as
select e.team_id, e.id as event_id, e.occurred_at, e.tx_id,
       coalesce(e.project_id, '{NO_PROJECT}'::uuid) as project_id,
       l.task_id, l.kind, l.target_id, l.active
from event e
cross join lateral (
    select e.subject_id, k.kind, tb_uuid(v), true
    from (values ('assignee', 'assignee_ids'), ('label', 'label_ids')) as k (kind, field),
         jsonb_array_elements_text(tb_json_array(case when e.kind = 'task.created'
             then e.payload -> k.field end)) v
    union all
    select e.subject_id, 'assignee', tb_uuid(v), e.kind = 'task.assigned'
    from jsonb_array_elements_text(tb_json_array(case when e.kind in
        ('task.assigned', 'task.unassigned') then e.payload -> 'user_ids' end)) v
    union all
    select e.subject_id, k.kind, tb_uuid(v), true
    from (values ('assignee', 'assignee_ids'), ('label', 'label_ids')) as k (kind, field),
         jsonb_array_elements_text(tb_json_array(case when e.kind = 'task.updated'
             then e.payload -> 'changes' -> k.field -> 'to' end)) v
    union all
    select e.subject_id, k.kind, tb_uuid(v), false
    from (values ('assignee', 'assignee_ids'), ('label', 'label_ids')) as k (kind, field),
         jsonb_array_elements_text(tb_json_array(case when e.kind = 'task.updated'
             then e.payload -> 'changes' -> k.field -> 'from' end)) v
    where not coalesce(e.payload -> 'changes' -> k.field -> 'to', '[]') ? v
    union all
    select tb_uuid(v), 'label', e.subject_id, false
    from jsonb_array_elements_text(tb_json_array(case when e.kind = 'label.deleted'
        then e.payload -> 'detached_tasks' end)) v
) as l (task_id, kind, target_id, active)
where e.kind in ('task.created', 'task.assigned', 'task.unassigned', 'task.updated',
                 'label.deleted')
  and l.task_id is not null and l.target_id is not null;
"""

# The fold of the events selected by a source predicate (all teams in a transaction-id range,
# or one team below a watermark), within an occurred_at range. Executed dynamically so each
# call is planned with its actual bounds. $1/$2: transaction ids from/to, $3: team,
# $4/$5: occurred_at from/to.
FOLD = """
-- What a completion keeps of its task, as the rollups hold it: lead time (from the task's
-- creation), cycle time (from its first start, when that came before the completion) and
-- the current assignees.
create function tb_analytics_completion_facts(
    p_team uuid, p_task uuid, p_completed_at timestamptz,
    out lead float8, out cycle float8, out assignees uuid[]
)
    language sql stable set search_path = pg_catalog, public as $$
select case when t.created_at <= p_completed_at
            then extract(epoch from p_completed_at - t.created_at)::float8 end,
       case when t.started_at <= p_completed_at
            then extract(epoch from p_completed_at - t.started_at)::float8 end,
       coalesce((select array_agg(l.target_id order by l.target_id)
                 from analytics_task_link l
                 where l.team_id = p_team and l.task_id = p_task and l.kind = 'assignee'
                   and l.active), '{}')
from (select 1) one
left join analytics_task t on t.team_id = p_team and t.task_id = p_task
$$;

create function tb_analytics_fold(
    p_from xid8, p_to xid8, p_team uuid, p_lo timestamptz, p_hi timestamptz
) returns bigint
    language plpgsql set search_path = pg_catalog, public as $fold$
declare
    source text := case when p_team is null then '' else 'f.team_id = $3 and ' end
        || 'f.tx_id >= $1 and f.tx_id < $2 and f.occurred_at >= $4 and f.occurred_at < $5';
    folded bigint;
begin
    -- Teams folded for the first time are bucketed in their current time zone.
    execute 'insert into analytics_state (team_id, time_zone)'
        ' select t.id, t.time_zone from team t where t.id in'
        ' (select distinct f.team_id from event f where ' || source || ')'
        ' on conflict (team_id) do nothing'
        using p_from, p_to, p_team, p_lo, p_hi;
    execute $sql$
with ev as materialized (
    select f.*, (f.occurred_at at time zone s.time_zone)::date as day
    from analytics_event_fact f join analytics_state s on s.team_id = f.team_id
    where $sql$ || source || $sql$
), fl as materialized (
    select f.team_id, f.project_id, f.category, f.delta,
           (f.occurred_at at time zone s.time_zone)::date as day
    from analytics_flow_fact f join analytics_state s on s.team_id = f.team_id
    where $sql$ || source || $sql$
), lk as materialized (
    select distinct on (f.team_id, f.task_id, f.kind, f.target_id) f.*
    from analytics_link_fact f
    where $sql$ || source || $sql$
    order by f.team_id, f.task_id, f.kind, f.target_id, f.occurred_at desc, f.event_id desc
), counters as materialized (
    select team_id, metric, day, project_id, dim, sum(n) as n from (
        select team_id, 'events' as metric, day, project_id, kind as dim, 1 as n from ev
        union all
        select team_id, 'created', day, project_id, '', 1 from ev where kind = 'task.created'
        union all
        select team_id, 'completed', day, project_id, '', 1 from ev
        where to_category = 'completed' and from_category is distinct from 'completed'
        union all
        select team_id, 'flow', day, project_id, category, delta from fl
    ) x
    group by team_id, metric, day, project_id, dim
), daily as (
    insert into analytics_daily as r (team_id, metric, day, project_id, dim, value)
    select team_id, metric, day, project_id, dim, n from counters
    on conflict (team_id, metric, day, project_id, dim)
    do update set value = r.value + excluded.value, updated_at = now()
), team_daily as (
    insert into analytics_team_daily as r (team_id, metric, day, dim, value)
    select team_id, metric, day, dim, sum(n) from counters group by team_id, metric, day, dim
    on conflict (team_id, metric, day, dim)
    do update set value = r.value + excluded.value, updated_at = now()
), actors as (
    insert into analytics_actor_daily as r (team_id, day, kind, project_id, actor, events)
    select team_id, day, kind, project_id, actor, count(*) from ev where actor is not null
    group by team_id, day, kind, project_id, actor
    on conflict (team_id, day, kind, project_id, actor)
    do update set events = r.events + excluded.events, updated_at = now()
), team_actors as (
    insert into analytics_team_actor (team_id, day, actor)
    select distinct team_id, day, actor from ev where actor is not null
    on conflict (team_id, day, actor) do nothing
    returning team_id, day
), actor_days as (
    insert into analytics_team_daily as r (team_id, metric, day, dim, value)
    select team_id, 'actors', day, '', count(*) from team_actors group by team_id, day
    on conflict (team_id, metric, day, dim)
    do update set value = r.value + excluded.value, updated_at = now()
), last_new as materialized (
    select team_id, actor, max(day) as day from ev where actor is not null
    group by team_id, actor
), last_old as materialized (
    select l.team_id, l.actor, l.day from analytics_actor_last l
    join last_new n on n.team_id = l.team_id and n.actor = l.actor
), last_seen as (
    insert into analytics_actor_last as r (team_id, actor, day)
    select team_id, actor, day from last_new
    on conflict (team_id, actor) do update set day = excluded.day, updated_at = now()
    where excluded.day > r.day
), last_moves as (
    insert into analytics_team_daily as r (team_id, metric, day, dim, value)
    select team_id, 'last_seen', day, '', sum(delta) from (
        select n.team_id, n.day, 1 as delta
        from last_new n left join last_old o on o.team_id = n.team_id and o.actor = n.actor
        where o.day is null or n.day > o.day
        union all
        select o.team_id, o.day, -1
        from last_new n join last_old o on o.team_id = n.team_id and o.actor = n.actor
        where n.day > o.day
    ) m
    group by team_id, day
    on conflict (team_id, metric, day, dim)
    do update set value = r.value + excluded.value, updated_at = now()
), totals as (
    insert into analytics_flow_total as r (team_id, project_id, category, tasks)
    select team_id, project_id, category, sum(delta) from fl
    group by team_id, project_id, category
    on conflict (team_id, project_id, category)
    do update set tasks = r.tasks + excluded.tasks, updated_at = now()
), tasks as (
    insert into analytics_task as r (team_id, task_id, project_id, created_at, started_at)
    select team_id, subject_id, (array_agg(project_id))[1],
           min(occurred_at) filter (where kind = 'task.created'),
           min(occurred_at) filter (where to_category = 'started')
    from ev
    where subject_id is not null and (kind = 'task.created' or to_category = 'started')
    group by team_id, subject_id
    on conflict (team_id, task_id) do update
    set created_at = least(r.created_at, excluded.created_at),
        started_at = least(r.started_at, excluded.started_at), updated_at = now()
), links as (
    insert into analytics_task_link as r
        (team_id, task_id, kind, target_id, project_id, active, changed_at, event_id)
    select team_id, task_id, kind, target_id, project_id, active, occurred_at, event_id from lk
    on conflict (team_id, task_id, kind, target_id) do update
    set active = excluded.active, changed_at = excluded.changed_at,
        event_id = excluded.event_id, updated_at = now()
    where (excluded.changed_at, excluded.event_id) > (r.changed_at, r.event_id)
)
select count(*) from ev
$sql$
        into folded
        using p_from, p_to, p_team, p_lo, p_hi;
    -- Completions, with their task's lead and cycle time and current assignees as the
    -- statement above left them; and the completions folded earlier of every task whose
    -- creation, workflow or assignees an event of this fold changed take its new facts (the
    -- update does not see the rows this statement inserts: they are current already).
    execute $sql$
with touched as materialized (
    select f.team_id, f.subject_id as task_id, f.id, f.occurred_at, f.project_id,
           f.to_category = 'completed' and f.from_category is distinct from 'completed' as done
    from analytics_event_fact f
    where $sql$ || source || $sql$ and f.subject_id is not null
      and f.kind in ('task.created', 'task.updated', 'task.moved', 'task.assigned',
                     'task.unassigned')
), added as (
    insert into analytics_completion (team_id, event_id, task_id, project_id, completed_at,
                                      lead_seconds, cycle_seconds, assignee_ids)
    select x.team_id, x.id, x.task_id, x.project_id, x.occurred_at, f.lead, f.cycle, f.assignees
    from touched x
    cross join lateral tb_analytics_completion_facts(x.team_id, x.task_id, x.occurred_at) f
    where x.done
    on conflict (team_id, event_id) do nothing
)
update analytics_completion c
set (lead_seconds, cycle_seconds, assignee_ids) = (
        select f.lead, f.cycle, f.assignees
        from tb_analytics_completion_facts(c.team_id, c.task_id, c.completed_at) f),
    updated_at = now()
from (select distinct team_id, task_id from touched) x
where c.team_id = x.team_id and c.task_id = x.task_id
$sql$
        using p_from, p_to, p_team, p_lo, p_hi;
    return folded;
end $fold$;

-- Forget the rollups of one team (or all), before folding them again from scratch, or
-- when the team is deleted.
create function tb_analytics_reset(p_team uuid) returns void
    language plpgsql set search_path = pg_catalog, public as $$
begin
    delete from analytics_daily where p_team is null or team_id = p_team;
    delete from analytics_team_daily where p_team is null or team_id = p_team;
    delete from analytics_actor_daily where p_team is null or team_id = p_team;
    delete from analytics_team_actor where p_team is null or team_id = p_team;
    delete from analytics_actor_last where p_team is null or team_id = p_team;
    delete from analytics_flow_total where p_team is null or team_id = p_team;
    delete from analytics_task where p_team is null or team_id = p_team;
    delete from analytics_completion where p_team is null or team_id = p_team;
    delete from analytics_task_link where p_team is null or team_id = p_team;
    delete from analytics_state where p_team is null or team_id = p_team;
end $$;

-- The rollup tables carry no foreign key to team: a key check per folded row (with its row
-- lock on the team) doubled the cost of a fold. Rows of a deleted team go with it here.
create function tb_analytics_forget_teams() returns trigger
    language plpgsql security definer set search_path = pg_catalog, public as $$
begin
    perform tb_analytics_reset(gone.id) from gone;
    return null;
end $$;

create trigger team_forget_analytics after delete on team
    referencing old table as gone
    for each statement execute function tb_analytics_forget_teams();
"""

# Whether the caller sees every project of the context team (then the per-team counters
# hold exactly the events they may see). Guests never do: project-less events are not theirs.
SEES_ALL = """
create function tb_analytics_sees_all() returns boolean
    language plpgsql stable security definer set search_path = pg_catalog, public as $$
begin
    return coalesce(tb_current_member_role() in ('owner', 'admin', 'member'), false)
        and not exists (
            select 1 from project p
            where p.team_id = tb_current_team_id()
              and p.id <> all((select tb_visible_project_ids())::uuid[])
        );
end $$;
"""

REFRESH = f"""
-- The incremental fold (see the module docstring). Returns nothing when another fold holds
-- the lock. Teams whose time zone changed are folded again from scratch, in the new zone,
-- before the new events are added.
create function tb_analytics_refresh()
    returns table (folded bigint, watermark xid8, rebucketed integer)
    language plpgsql security definer set search_path = pg_catalog, public as $$
declare
    old_w xid8;
    new_w xid8;
    moved uuid;
    rebuilt integer := 0;
begin
    if not pg_try_advisory_xact_lock({FOLD_LOCK}) then
        return;
    end if;
    select w.tx_id into old_w from analytics_watermark w where w.id = 1 for update;
    new_w := pg_snapshot_xmin(pg_current_snapshot());
    if new_w <= old_w then
        return query select 0::bigint, old_w, 0;
        return;
    end if;
    for moved in
        select s.team_id from analytics_state s join team t on t.id = s.team_id
        where s.time_zone <> t.time_zone
          and s.team_id in (select e.team_id from event e where e.kind = 'team.updated'
                            and e.tx_id >= old_w and e.tx_id < new_w)
    loop
        perform tb_analytics_reset(moved);
        perform tb_analytics_fold('0', old_w, moved, '-infinity', 'infinity');
        rebuilt := rebuilt + 1;
    end loop;
    folded := tb_analytics_fold(old_w, new_w, null, '-infinity', 'infinity');
    update analytics_watermark set tx_id = new_w, folded_at = now(), updated_at = now()
    where id = 1;
    return query select folded, new_w, rebuilt;
end $$;
"""

FUNCTIONS = (
    "tb_analytics_forget_teams()",
    "tb_analytics_sees_all()",
    "tb_analytics_refresh()",
    "tb_analytics_reset(uuid)",
    "tb_analytics_fold(xid8, xid8, uuid, timestamptz, timestamptz)",
    "tb_analytics_completion_facts(uuid, uuid, timestamptz)",
    "tb_event_appended()",
    "tb_event_forget_teams()",
    "tb_json_array(jsonb)",
    "tb_uuid(text)",
    "tb_uuid7()",
    "tb_is_time_zone(text)",
)
VIEW_NAMES = ("analytics_link_fact", "analytics_flow_fact", "analytics_event_fact")
ROLLUP_TABLES = (
    "analytics_daily",
    "analytics_team_daily",
    "analytics_actor_daily",
    "analytics_team_actor",
    "analytics_actor_last",
    "analytics_flow_total",
    "analytics_task",
    "analytics_completion",
    "analytics_task_link",
)


def rollup_visible() -> str:
    """Rows of a visible project, or of no project for members other than guests (the
    visibility of the events they come from)."""
    return (
        f"{IN_TEAM} and ((project_id = '{NO_PROJECT}'::uuid and {CURRENT_ROLE} <> 'guest')"
        " or project_id = any((select tb_visible_project_ids())::uuid[]))"
    )


def _policies() -> list[tuple[str, Policies, dict[str, object]]]:
    read_only: dict[str, object] = {"grants": ("select",), "touch": False}
    secured: list[tuple[str, Policies, dict[str, object]]] = [
        (table, Policies(rollup_visible(), DENY, DENY, DENY), read_only)
        for table in ("analytics_daily", "analytics_actor_daily", "analytics_flow_total")
    ]
    secured += [
        (table, Policies(project_visible_by_call(), DENY, DENY, DENY), read_only)
        for table in ("analytics_task", "analytics_completion", "analytics_task_link")
    ]
    whole_team = f"{IN_TEAM} and (select tb_analytics_sees_all())"
    secured += [
        (table, Policies(whole_team, DENY, DENY, DENY), read_only)
        for table in ("analytics_team_daily", "analytics_team_actor", "analytics_actor_last")
    ]
    secured.append(("analytics_state", Policies(IN_TEAM, DENY, DENY, DENY), read_only))
    # One global row, a transaction id: readable with any user context.
    secured.append(
        (
            "analytics_watermark",
            Policies(f"{CURRENT_USER} is not null", DENY, DENY, DENY),
            {**read_only, "tenant": False},
        )
    )
    return secured


def upgrade() -> None:
    role = app_role()
    op.execute(HELPERS)
    op.execute(f"grant update (time_zone) on team to {role}")
    # The transaction id is what the rollup tail and the fold rely on: only its default
    # may set it.
    op.execute(f"revoke insert on event from {role}")
    op.execute(f"grant insert ({EVENT_COLUMNS}) on event to {role}")
    op.execute(EVENT_INDEXES)
    op.execute(EVENT_TRIGGERS)
    op.execute(TABLES)
    op.execute(VIEWS)
    for view in VIEW_NAMES:
        op.execute(f"revoke all on {view} from public")
        op.execute(f"grant select on {view} to {role}")
    op.execute(FOLD)
    op.execute(SEES_ALL)
    op.execute(REFRESH)
    for function in FUNCTIONS:
        op.execute(f"revoke all on function {function} from public")
    # The views call the two helpers as the reader; the team CHECK calls tb_is_time_zone as
    # the writer.
    granted = (
        "tb_analytics_refresh()",
        "tb_analytics_sees_all()",
        "tb_uuid(text)",
        "tb_uuid7()",
        "tb_json_array(jsonb)",
    )
    for function in (*granted, "tb_is_time_zone(text)"):
        op.execute(f"grant execute on function {function} to {role}")
    for table, policies, options in _policies():
        tenancy.apply(op.execute, secure_table(table, policies, app_role=role, **options))  # type: ignore[arg-type]


def downgrade() -> None:
    role = app_role()
    op.execute("drop trigger if exists team_forget_analytics on team")
    op.execute(
        "drop function if exists tb_analytics_refresh(), tb_analytics_forget_teams(),"
        " tb_analytics_reset(uuid)"
    )
    op.execute(
        "drop function if exists tb_analytics_fold(xid8, xid8, uuid, timestamptz, timestamptz),"
        " tb_analytics_completion_facts(uuid, uuid, timestamptz)"
    )
    op.execute(f"drop view if exists {', '.join(VIEW_NAMES)}")
    op.execute(
        f"drop table if exists {', '.join(ROLLUP_TABLES)}, analytics_state, analytics_watermark"
    )
    op.execute("drop function if exists tb_analytics_sees_all()")  # after its policy's table
    op.execute("drop index if exists ix_time_entry_team_id_started_at_finished")
    op.execute("drop index if exists ix_event_team_id_kind_occurred_at_custom")
    op.execute(EVENT_TRIGGERS_DOWN)
    op.execute(f"revoke insert ({EVENT_COLUMNS}) on event from {role}")
    op.execute(f"grant insert on event to {role}")
    op.execute("alter table team drop constraint ck_team_time_zone")
    op.execute("alter table team drop column time_zone")
    op.execute(
        "drop function if exists tb_json_array(jsonb), tb_uuid(text), tb_uuid7(),"
        " tb_is_time_zone(text)"
    )

"""SQL of the dashboards: one statement each (see ``analytics.sql`` for the parts).

Every function takes the resolved :class:`Period` (statement 1, :func:`resolve_period`) and
runs one more statement; all rows go through Row Level Security, so a caller counts only
the events, tasks and entries they may see (private projects, guests).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from uuid import UUID

from teamboard.analytics import counted
from teamboard.analytics.period import Bucket, Filters, Period, Span
from teamboard.analytics.sql import (
    COMPLETION,
    STATE,
    USABLE,
    bucket,
    completed_tasks,
    completions,
    daily,
    kind_clause,
    kinds,
    link_targets,
    links_of,
    local_day,
    matching_tasks,
    merged,
    only_matching,
    params,
    projects,
    tail,
)
from teamboard.db import Tx
from teamboard.kit.pagination import limit_clause

GroupBy = Literal["project", "user", "label"]

PERIOD_SQL = (
    "select t.time_zone as tz, r.d0, r.d1,"
    " coalesce((select s.time_zone = t.time_zone from analytics_state s"
    "  where s.team_id = t.id), false) as rollups,"
    " r.d0::timestamp at time zone t.time_zone as lo,"
    " (r.d1 + 1)::timestamp at time zone t.time_zone as hi"
    " from team t cross join lateral (select"
    "  coalesce(%(start)s::date,"
    "   (now() at time zone t.time_zone)::date - (%(days)s::int - 1)) as d0,"
    "  coalesce(%(end)s::date, (now() at time zone t.time_zone)::date) as d1) r"
    " where t.id = %(team)s"
)


async def resolve_period(tx: Tx, team_id: UUID, span: Span, bucket_: Bucket) -> Period | None:
    """The period's days and instants in the team's time zone; None when the caller is not
    a member (the team row is invisible)."""
    row = await tx.fetch_one(
        PERIOD_SQL, {"team": team_id, "start": span.start, "end": span.end, "days": span.days}
    )
    if row is None:
        return None
    return Period(
        row["tz"], row["d0"], row["d1"], row["lo"], row["hi"], bucket_, rollups=row["rollups"]
    )


async def event_counts(
    tx: Tx, team_id: UUID, period: Period, filters: Filters, *, raw: bool = False
) -> list[dict[str, Any]]:
    """``(bucket, kind, n)``: events per bucket and kind."""
    rollup = f"select day, dim, value from ({daily(('events',), filters, kind_clause(filters))}) r"
    tail_part = (
        f"select {local_day('e')}, e.kind, 1 from {tail('event', 'e', raw=raw, zoned=True)}"
        + projects(filters, "e.project_id")
        + kinds(filters, "e.kind")
    )
    sql = (
        f"with {STATE}, facts (day, kind, n) as ({merged(rollup, tail_part, raw=raw)})"
        f" select {bucket('day', period)} as bucket, kind, sum(n)::bigint as n from facts"
        " where day between %(d0)s and %(d1)s group by 1, 2 order by 1, 2"
    )
    return await tx.fetch_all(sql, params(team_id, period, filters))


def _actor_pairs(filters: Filters, period: Period, *, raw: bool, gate: str) -> str:
    """CTE ``pairs``: the distinct (bucket, actor) of the period, from the per-project actor
    rollups and the tail, when ``gate`` holds (else none)."""
    rollup = (
        "select r.day, r.actor from analytics_actor_daily r"
        f" where r.team_id = %(team)s and r.day between %(d0)s and %(d1)s and {USABLE}"
        + projects(filters, "r.project_id")
        + kinds(filters, "r.kind")
    )
    tail_part = (
        f"select {local_day('f')}, f.actor"
        f" from {tail('analytics_event_fact', 'f', raw=raw, zoned=True)}"
        " and f.actor is not null" + projects(filters, "f.project_id") + kinds(filters, "f.kind")
    )
    # Distinct (bucket, actor) pairs first, by hashing: far cheaper than count(distinct),
    # which sorts every group.
    return (
        f"facts (day, actor) as ({merged(rollup, tail_part, raw=raw)}),"
        f" pairs as materialized (select distinct {bucket('day', period)} as b, actor"
        f"  from facts where day between %(d0)s and %(d1)s and {gate})"
    )


#: Daily buckets of the whole team, for a period ending on or after every actor's last day:
#: the per-day counters plus the tail's new (day, actor) pairs, and the period's total from
#: the last-seen counters plus the tail's actors not seen since the period began (see
#: analytics_team_actor). Cost: a row per day and per tail event.
WHOLE_TEAM_ACTORS = (
    " counted as materialized (select (select usable and whole from st) and not exists ("
    "  select 1 from analytics_team_daily r where r.team_id = %(team)s"
    "  and r.metric = 'last_seen' and r.day > %(d1)s and r.value <> 0) as ok),"
    " recent as materialized (select distinct {day} as day, f.actor"
    "  from {tail} and f.actor is not null and (select ok from counted)),"
    " {pairs}"
    " select day as bucket, sum(n)::bigint as actors from ("
    "  select r.day, r.value as n from analytics_team_daily r where r.team_id = %(team)s"
    "  and r.metric = 'actors' and r.day between %(d0)s and %(d1)s and (select ok from counted)"
    "  union all"
    "  select t.day, 1 from recent t where t.day between %(d0)s and %(d1)s and not exists ("
    "   select 1 from analytics_team_actor a"
    "   where a.team_id = %(team)s and a.day = t.day and a.actor = t.actor)"
    " ) x group by day having sum(n) <> 0"
    " union all"
    " select null, (select coalesce(sum(r.value), 0)::bigint from analytics_team_daily r"
    "  where r.team_id = %(team)s and r.metric = 'last_seen' and r.day >= %(d0)s)"
    "  + (select count(distinct t.actor) from recent t"
    "   where t.day between %(d0)s and %(d1)s and not exists ("
    "    select 1 from analytics_actor_last l"
    "    where l.team_id = %(team)s and l.actor = t.actor and l.day >= %(d0)s))"
    " where (select ok from counted)"
    " union all select b, count(*) from pairs group by b"
    " union all select null, count(*) from (select distinct actor from pairs) x"
    " having not (select ok from counted)"
)


async def unique_actors(
    tx: Tx, team_id: UUID, period: Period, filters: Filters, *, raw: bool = False
) -> list[dict[str, Any]]:
    """``(bucket, actors)`` per bucket, and the period's total (``bucket`` null).

    Daily buckets of the whole team (no filter, a caller who sees every project, a period
    ending on or after every actor's last day: the usual windows) read per-day counters;
    anything else counts the distinct (bucket, actor) pairs of the period.
    """
    if raw or filters.projects or filters.kinds or period.bucket != "day":
        sql = (
            f"with {STATE}, {_actor_pairs(filters, period, raw=raw, gate='true')}"
            " select b as bucket, count(*) as actors from pairs group by b"
            " union all select null, count(*) from (select distinct actor from pairs) x"
        )
    else:
        sql = f"with {STATE}," + WHOLE_TEAM_ACTORS.format(
            day=local_day("f"),
            tail=tail("analytics_event_fact", "f", raw=False, zoned=True),
            pairs=_actor_pairs(filters, period, raw=False, gate="not (select ok from counted)"),
        )
    return await tx.fetch_all(sql, params(team_id, period, filters))


async def task_counts(
    tx: Tx, team_id: UUID, period: Period, filters: Filters, *, raw: bool = False
) -> list[dict[str, Any]]:
    """``(bucket, metric, n)``: tasks created and completed per bucket.

    Without assignee and label filters this reads the daily counters; with them, the
    per-task facts joined with the current links.
    """
    prefix = matching_tasks(filters, raw=raw)
    if not prefix:
        rollup = f"select day, metric, value from ({daily(('created', 'completed'), filters)}) r"
        tail_part = (
            f"select {local_day('f')}, m.metric, 1 from (select * from"
            f" {tail('analytics_event_fact', 'f', raw=raw, zoned=True)}"
            " and f.kind in ('task.created', 'task.updated', 'task.moved')"
            + projects(filters, "f.project_id")
            + ") f cross join lateral (values ('created', f.kind = 'task.created'),"
            f" ('completed', {COMPLETION.format(a='f')})) m (metric, hit) where m.hit"
        )
        body = merged(rollup, tail_part, raw=raw)
    else:
        created = merged(
            "select r.task_id, r.created_at from analytics_task r where r.team_id = %(team)s"
            " and r.created_at >= %(lo)s and r.created_at < %(hi)s"
            + projects(filters, "r.project_id"),
            "select f.subject_id, f.occurred_at"
            f" from {tail('analytics_event_fact', 'f', raw=raw, zoned=False)}"
            " and f.kind = 'task.created'" + projects(filters, "f.project_id"),
            raw=raw,
        )
        body = (
            "select (x.at at time zone %(tz)s)::date, x.metric, 1 from ("
            f" select task_id, at, 'created' as metric from ({created}) c (task_id, at)"
            " union all"
            f" select task_id, at, 'completed' from ({completions(filters, raw=raw)})"
            " d (task_id, at)) x where true" + only_matching(filters, "x.task_id")
        )
    sql = (
        f"with {STATE}, {prefix} facts (day, metric, n) as ({body})"
        f" select {bucket('day', period)} as bucket, metric, sum(n)::bigint as n from facts"
        " where day between %(d0)s and %(d1)s group by 1, 2 order by 1, 2"
    )
    return await tx.fetch_all(sql, params(team_id, period, filters))


async def throughput(
    tx: Tx, team_id: UUID, period: Period, filters: Filters, *, raw: bool = False
) -> list[dict[str, Any]]:
    """``(assignee_id, completed, total)``: completions per current assignee (null: none),
    and one row with ``total`` true counting every completion once.

    Without assignee and label filters this reads counters (``analytics.counted``), unless
    they are bucketed in another zone than the period's; otherwise, the period's
    completions."""
    touched = (
        "select l.task_id"
        f" from {tail('analytics_link_fact', 'l', raw=False, zoned=False, window='all')}"
        " and l.kind = 'assignee'"
    )
    if _counters_answer(period, filters, raw=raw):
        rows = await counted.throughput(tx, team_id, period, filters, touched)
        if rows is not None:
            return rows
    sql = (
        f"with {STATE}, {completed_tasks(filters, touched, raw=raw)},"
        f" asg as ({links_of('redo', 'assignee', raw=raw)})"
        " select null::uuid as assignee_id, count(*) as completed, true as total from cof"
        " union all"
        " select x.assignee_id, count(*), false from ("
        "  select a.id from cof left join lateral unnest(cof.assignee_ids) a (id) on true"
        "  where cof.stored"
        "  union all"
        "  select a.target_id from redo left join asg a on a.task_id = redo.task_id and a.active"
        " ) x (assignee_id) group by x.assignee_id"
    )
    return await tx.fetch_all(sql, params(team_id, period, filters))


def _counters_answer(period: Period, filters: Filters, *, raw: bool) -> bool:
    """Whether the completion counters may answer: not the raw computation, no assignee or
    label filter (they hold no labels, and count every assignee of a task), and rollups
    bucketed in the period's zone when it was resolved (their statement checks again)."""
    return not raw and period.rollups and link_targets(filters) is None


def _task_facts(tasks: str, *, raw: bool) -> str:
    """``(task_id, created_at, started_at)`` rows of the tasks of CTE ``tasks``, from the
    rollups and the tail (several per task: the earliest of each counts)."""
    return merged(
        "select t.task_id, r.created_at, r.started_at"
        f" from (select distinct task_id from {tasks}) t cross join lateral ("
        "  select r.created_at, r.started_at from analytics_task r"
        "  where r.team_id = %(team)s and r.task_id = t.task_id offset 0) r",
        "select f.subject_id,"
        " case when f.kind = 'task.created' then f.occurred_at end,"
        " case when f.to_category = 'started' then f.occurred_at end"
        f" from {tail('analytics_event_fact', 'f', raw=raw, zoned=False, window='all')}"
        f" and f.subject_id in (select task_id from {tasks}) and {_TASK_FACTS}",
        raw=raw,
    )


_TASK_FACTS = "(f.kind = 'task.created' or f.to_category = 'started')"


async def durations(
    tx: Tx, team_id: UUID, period: Period, filters: Filters, *, raw: bool = False
) -> dict[str, Any]:
    """Lead time (completion - creation) and cycle time (completion - first start before
    it) of the period's completions, in seconds: counts and p50/p85/p95.

    Without assignee and label filters this reads counters (``analytics.counted``), unless
    they are bucketed in another zone than the period's; otherwise, the period's
    completions."""
    touched = (
        "select f.subject_id"
        f" from {tail('analytics_event_fact', 'f', raw=False, zoned=False, window='all')}"
        f" and f.subject_id is not null and {_TASK_FACTS}"
    )
    if _counters_answer(period, filters, raw=raw):
        found = await counted.durations(
            tx, team_id, period, filters, touched, _task_facts(counted.REDO, raw=False)
        )
        if found is not None:
            return found
    quantiles = "percentile_cont(array[0.5, 0.85, 0.95]::float8[]) within group (order by {})"
    sql = (
        f"with {STATE}, {completed_tasks(filters, touched, raw=raw)},"
        " tf as (select task_id, min(created_at) as created_at, min(started_at) as started_at"
        f"  from ({_task_facts('redo', raw=raw)}) x (task_id, created_at, started_at)"
        "  group by task_id),"
        " d as (select lead, cycle from cof where stored"
        "  union all select"
        "  case when tf.created_at <= redo.completed_at"
        "   then extract(epoch from redo.completed_at - tf.created_at)::float8 end,"
        "  case when tf.started_at <= redo.completed_at"
        "   then extract(epoch from redo.completed_at - tf.started_at)::float8 end"
        "  from redo left join tf on tf.task_id = redo.task_id)"
        " select count(*) as completed, count(lead) as lead_count,"
        f" {quantiles.format('lead')} as lead, count(cycle) as cycle_count,"
        f" {quantiles.format('cycle')} as cycle from d"
    )
    row = await tx.fetch_one(sql, params(team_id, period, filters))
    assert row is not None
    return row


async def flow(
    tx: Tx, team_id: UUID, period: Period, filters: Filters, *, raw: bool = False
) -> list[dict[str, Any]]:
    """Rows ``('total', null, category, n)``: tasks per status category now; and
    ``('delta', day, category, n)``: the net change of each day from the period's start on
    (the cumulative flow is the totals minus the later changes)."""
    totals = merged(
        "select t.category, t.tasks from analytics_flow_total t where t.team_id = %(team)s"
        + projects(filters, "t.project_id"),
        "select f.category, f.delta"
        f" from {tail('analytics_flow_fact', 'f', raw=raw, zoned=False, window='all')}"
        + projects(filters, "f.project_id"),
        raw=raw,
    )
    deltas = merged(
        f"select day, dim, value from ({daily(('flow',), filters, since=True)}) r",
        f"select {local_day('f')}, f.category, f.delta"
        f" from {tail('analytics_flow_fact', 'f', raw=raw, zoned=True, window='since')}"
        + projects(filters, "f.project_id"),
        raw=raw,
    )
    sql = (
        f"with {STATE}, cur (category, n) as ({totals}), dl (day, category, n) as ({deltas})"
        " select 'total' as part, null::date as day, category, sum(n)::bigint as n from cur"
        " group by category"
        " union all"
        " select 'delta', day, category, sum(n)::bigint from dl where day >= %(d0)s"
        " group by day, category"
    )
    until = datetime.now(UTC) + timedelta(days=1)
    return await tx.fetch_all(sql, params(team_id, period, filters, until=until))


async def time_tracked(
    tx: Tx,
    team_id: UUID,
    period: Period,
    filters: Filters,
    group_by: GroupBy,
    *,
    raw: bool = False,
) -> list[dict[str, Any]]:
    """Finished time entries started in the period: rows ``('bucket', bucket, null, seconds,
    entries)`` per bucket, and ``('group', null, key, seconds, entries)`` per project, user
    or label (an entry counts for each label of its task; key null: no label).

    By project or user, without assignee and label filters, this reads the daily counters
    (``analytics.counted``), unless the team's zone changed since the period was resolved;
    otherwise, the entries."""
    if not raw and group_by != "label" and link_targets(filters) is None:
        rows = await counted.time_tracked(tx, team_id, period, filters, group_by)
        if rows is not None:
            return rows
    users = " and t.user_id = any(%(users)s::uuid[])" if filters.users else ""
    entries = (
        f"{matching_tasks(filters, raw=raw)} te as ("
        " select t.task_id, t.project_id, t.user_id,"
        "  (t.started_at at time zone %(tz)s)::date as day,"
        "  extract(epoch from t.ended_at - t.started_at)::bigint as seconds"
        " from time_entry t where t.team_id = %(team)s and t.ended_at is not null"
        "  and t.started_at >= %(lo)s and t.started_at < %(hi)s"
        + projects(filters, "t.project_id")
        + users
        + only_matching(filters, "t.task_id")
        + ")"
    )
    if group_by == "label":
        labels = links_of("te", "label", raw=raw)
        entries += f", lb as ({labels})"
        keyed = "te left join lb l on l.task_id = te.task_id and l.active"
        key = "l.target_id"
    else:
        keyed, key = "te", f"te.{'project_id' if group_by == 'project' else 'user_id'}"
    sql = (
        f"with {STATE}, {entries}"
        f" select 'bucket' as part, {bucket('te.day', period)} as bucket, null::uuid as key,"
        "  sum(te.seconds)::bigint as seconds, count(*) as entries from te group by 2"
        f" union all select 'group', null, {key}, sum(te.seconds)::bigint, count(*)"
        f" from {keyed} group by {key}"
    )
    return await tx.fetch_all(sql, params(team_id, period, filters))


async def drilldown(
    tx: Tx,
    team_id: UUID,
    period: Period,
    filters: Filters,
    limit: int,
    after: tuple[datetime, UUID] | None,
) -> list[dict[str, Any]]:
    """Raw events of the period, newest first (keyset on ``(occurred_at, id)``), with an
    exact ``kind`` filter; custom kinds use the partial covering index."""
    kind = ""
    if filters.exact_kinds:
        kind = " and e.kind = any(%(kinds)s::text[])"
        if all(k.startswith("custom.") for k in filters.exact_kinds):
            kind += " and e.kind like 'custom.%%'"  # lets the planner use the partial index
    keyset = " and (e.occurred_at, e.id) < (%(at)s, %(id)s)" if after else ""
    sql = (
        "select e.id, e.occurred_at, e.kind, e.actor_id, e.project_id, e.subject_id, e.payload"
        " from event e where e.team_id = %(team)s"
        " and e.occurred_at >= %(lo)s and e.occurred_at < %(hi)s"
        + kind
        + projects(filters, "e.project_id")
        + keyset
        + f" order by e.occurred_at desc, e.id desc {limit_clause(limit + 1)}"
    )
    extra: dict[str, Any] = {}
    if after is not None:
        extra["at"], extra["id"] = after
    return await tx.fetch_all(sql, params(team_id, period, filters, **extra))

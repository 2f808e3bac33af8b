"""SQL of the dashboards: one statement each (see ``analytics.sql`` for the parts).

Every function takes the resolved :class:`Period` (statement 1, :func:`resolve_period`) and
runs one more statement; all rows go through Row Level Security, so a caller counts only
the events, tasks and entries they may see (private projects, guests).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from uuid import UUID

from teamboard.analytics.period import Bucket, Filters, Period, Span
from teamboard.analytics.sql import (
    COMPLETION,
    STATE,
    USABLE,
    bucket,
    completions,
    daily,
    kind_clause,
    kinds,
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

GroupBy = Literal["project", "user", "label"]

PERIOD_SQL = (
    "select t.time_zone as tz, r.d0, r.d1,"
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
    return Period(row["tz"], row["d0"], row["d1"], row["lo"], row["hi"], bucket_)


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


async def unique_actors(
    tx: Tx, team_id: UUID, period: Period, filters: Filters, *, raw: bool = False
) -> list[dict[str, Any]]:
    """``(bucket, actors)`` per bucket, and the period's total (``bucket`` null)."""
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
    sql = (
        f"with {STATE}, facts (day, actor) as ({merged(rollup, tail_part, raw=raw)}),"
        f" pairs as materialized (select distinct {bucket('day', period)} as b, actor"
        "  from facts where day between %(d0)s and %(d1)s)"
        " select b as bucket, count(*) as actors from pairs group by b"
        " union all select null, count(*) from (select distinct actor from pairs) x"
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


def _completed_tasks(filters: Filters, *, raw: bool) -> str:
    """CTEs ``co`` (completions in the period) and ``cof`` (those passing the filters)."""
    return (
        f"{matching_tasks(filters, raw=raw)}"
        f" co (task_id, completed_at) as ({completions(filters, raw=raw)}),"
        " cof as (select task_id, completed_at from co where true"
        f"{only_matching(filters, 'co.task_id')})"
    )


async def throughput(
    tx: Tx, team_id: UUID, period: Period, filters: Filters, *, raw: bool = False
) -> list[dict[str, Any]]:
    """``(assignee_id, completed, total)``: completions per current assignee (null: none),
    and one row with ``total`` true counting every completion once."""
    assignees = links_of("cof", "assignee", raw=raw)
    sql = (
        f"with {STATE}, {_completed_tasks(filters, raw=raw)}, asg as ({assignees})"
        " select null::uuid as assignee_id, count(*) as completed, true as total from cof"
        " union all"
        " select a.target_id, count(*), false from cof"
        " left join asg a on a.task_id = cof.task_id and a.active"
        " group by a.target_id"
    )
    return await tx.fetch_all(sql, params(team_id, period, filters))


async def durations(
    tx: Tx, team_id: UUID, period: Period, filters: Filters, *, raw: bool = False
) -> dict[str, Any]:
    """Lead time (completion - creation) and cycle time (completion - first start before
    it) of the period's completions, in seconds: counts and p50/p85/p95."""
    facts = merged(
        "select t.task_id, r.created_at, r.started_at"
        " from (select distinct task_id from cof) t cross join lateral ("
        "  select r.created_at, r.started_at from analytics_task r"
        "  where r.team_id = %(team)s and r.task_id = t.task_id offset 0) r",
        "select f.subject_id,"
        " case when f.kind = 'task.created' then f.occurred_at end,"
        " case when f.to_category = 'started' then f.occurred_at end"
        f" from {tail('analytics_event_fact', 'f', raw=raw, zoned=False, window='all')}"
        " and f.subject_id in (select task_id from cof)"
        " and (f.kind = 'task.created' or f.to_category = 'started')",
        raw=raw,
    )
    quantiles = "percentile_cont(array[0.5, 0.85, 0.95]::float8[]) within group (order by {})"
    sql = (
        f"with {STATE}, {_completed_tasks(filters, raw=raw)},"
        " tf as (select task_id, min(created_at) as created_at, min(started_at) as started_at"
        f"  from ({facts}) x (task_id, created_at, started_at) group by task_id),"
        " d as (select"
        "  case when tf.created_at <= cof.completed_at"
        "   then extract(epoch from cof.completed_at - tf.created_at)::float8 end as lead,"
        "  case when tf.started_at <= cof.completed_at"
        "   then extract(epoch from cof.completed_at - tf.started_at)::float8 end as cycle"
        "  from cof left join tf on tf.task_id = cof.task_id)"
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
    or label (an entry counts for each label of its task; key null: no label)."""
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
        + " order by e.occurred_at desc, e.id desc limit %(limit)s"
    )
    extra: dict[str, Any] = {"limit": limit + 1}
    if after is not None:
        extra["at"], extra["id"] = after
    return await tx.fetch_all(sql, params(team_id, period, filters, **extra))

"""Throughput, lead and cycle time, and time tracked, from counters: what they cost follows
the period's length, not the number of completions or entries it holds.

* Completions (``analytics_completion_node``, see its migration): the period is a union of
  a few aligned day *nodes* (``period.nodes``); a node holds, per project and for the whole
  team, completions per current assignee and lead and cycle times per logarithmic bucket,
  with each bucket's values. Like every rollup it is exact as of the watermark; the tail
  corrects it in the same statement: the period's completions that are not folded yet
  (``fresh``) are added, and the folded ones whose task's facts the tail changes (``stale``:
  a new assignee, an earlier start) are taken out with the facts they were counted with and
  added back with their current ones.
* Percentiles are exact: each rank is located level by level (its doubling, its bucket,
  its step), merging a bounded number of counts at each, then read in the few values of
  its step (``percentile_cont``'s interpolation, computed as PostgreSQL does).
* Time tracked (``analytics_time_daily``): kept by triggers in the writing transaction, so
  exact with no tail, per local day of the team's current zone.

Each function answers as the dashboard's own query in ``analytics.repository`` does, or
``None`` when the counters cannot answer in its snapshot (bucketed in another zone than the
period's): the caller, which only asks when the period said they could, then runs its own
query. A dashboard is two statements, three in that rare race.
"""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID

from teamboard.analytics.period import Filters, Period, nodes
from teamboard.analytics.sql import (
    COMPLETION,
    NO_PROJECT,
    STATE,
    USABLE,
    bucket,
    daily,
    links_of,
    params,
    projects,
    tail,
)
from teamboard.db import Tx

#: ``analytics_completion_node`` rows of the period's nodes for one measure, as alias ``r``:
#: the whole team's row when the caller sees every project and filters none, else the
#: per-project rows (which Row Level Security restricts to the projects they see).
_NODES = (
    " from analytics_completion_node r join unnest(%(spans)s::int[], %(starts)s::date[])"
    " nd (span, start) on r.span = nd.span and r.start = nd.start{join}"
    " where r.team_id = %(team)s and r.measure {measure}"
)


def _scoped(
    columns: str, measure: str, filters: Filters, *, join: str = "", extra: str = ""
) -> str:
    base = f"select {columns}" + _NODES.format(measure=measure, join=join) + extra
    if filters.projects:
        return base + projects(filters, "r.project_id") + f" and {USABLE}"
    nil = f"'{NO_PROJECT}'::uuid"
    return (
        f"{base} and r.project_id = {nil} and (select usable and whole from st)"
        f" union all {base} and r.project_id <> {nil} and (select usable and not whole from st)"
    )


def _node_params(team_id: UUID, period: Period, filters: Filters) -> dict[str, Any]:
    """The query parameters, with the period's nodes (``spans``, ``starts``)."""
    spans, starts = nodes(period.start, period.end)
    return params(team_id, period, filters, spans=spans, starts=starts)


#: The CTE of the completions to compute with their task's current facts.
REDO = "again"


def _corrections(filters: Filters, touched: str) -> str:
    """CTEs ``st``, ``touched`` (the tasks whose facts the tail changes: query ``touched``),
    ``stale`` (their folded completions in the period: ``task_id, completed_at, lead,
    cycle, assignee_ids``), ``fresh`` (the tail's completions in the period: ``task_id,
    completed_at``) and :data:`REDO` (both, to compute with current facts)."""
    return (
        f"with {STATE}, touched (task_id) as materialized ({touched}),"
        # One index probe per touched task (``offset 0`` keeps the planner from reading the
        # period's completions instead).
        " stale as materialized (select c.* from (select distinct task_id from touched) t"
        "  cross join lateral (select c.task_id, c.completed_at, c.lead_seconds as lead,"
        "  c.cycle_seconds as cycle, c.assignee_ids from analytics_completion c"
        "  where c.team_id = %(team)s and c.task_id = t.task_id"
        "  and c.completed_at >= %(lo)s and c.completed_at < %(hi)s"
        + projects(filters, "c.project_id")
        + f" and {USABLE} offset 0) c),"
        " fresh as materialized (select f.subject_id as task_id, f.occurred_at as completed_at"
        f"  from {tail('analytics_event_fact', 'f', raw=False, zoned=False)}"
        f"  and f.subject_id is not null and {COMPLETION.format(a='f')}"
        + projects(filters, "f.project_id")
        + f" and {USABLE}),"
        f" {REDO} as (select task_id, completed_at from stale"
        "  union all select task_id, completed_at from fresh)"
    )


#: Every completion of the period once: the daily counters plus the tail's.
_COMPLETED = (
    "((select coalesce(sum(value), 0) from ({counters}) c) + (select count(*) from fresh))::bigint"
)


async def throughput(
    tx: Tx, team_id: UUID, period: Period, filters: Filters, touched: str
) -> list[dict[str, Any]] | None:
    """``(assignee_id, completed, total)`` rows, as ``repository.throughput`` answers them."""
    counters = _scoped(
        "a.assignee, a.n",
        "= 'assignee'",
        filters,
        join=" cross join unnest(r.assignees, r.counts) a (assignee, n)",
        extra=" and r.dim = '*'",
    )
    completed = _COMPLETED.format(counters=daily(("completed",), filters))
    nil = f"'{NO_PROJECT}'::uuid"  # no assignee
    sql = (
        f"{_corrections(filters, touched)},"
        f" again_asg as ({links_of(REDO, 'assignee', raw=False)}),"
        f" counted (assignee, n) as ({counters}"
        f"  union all select coalesce(a, {nil}), -1 from stale cross join unnest("
        "   case when cardinality(stale.assignee_ids) = 0 then '{null}'::uuid[]"
        "   else stale.assignee_ids end) a"
        f"  union all select coalesce(a.target_id, {nil}), 1"
        f"  from {REDO} r left join again_asg a on a.task_id = r.task_id and a.active)"
        f" select null::uuid as assignee_id, {completed} as completed, true as total"
        " where (select usable from st)"
        f" union all select nullif(assignee, {nil}), sum(n)::bigint, false from counted"
        " group by assignee having sum(n) <> 0"
    )
    rows = await tx.fetch_all(sql, _node_params(team_id, period, filters))
    return rows if any(row["total"] for row in rows) else None


#: Lead and cycle time of each :data:`REDO` completion, from its task's facts (``again_tf``).
REDO_DURATIONS = (
    " select 'lead', extract(epoch from r.completed_at - tf.created_at)::float8, 1"
    f" from {REDO} r join again_tf tf on tf.task_id = r.task_id"
    " where tf.created_at <= r.completed_at"
    " union all"
    " select 'cycle', extract(epoch from r.completed_at - tf.started_at)::float8, 1"
    f" from {REDO} r join again_tf tf on tf.task_id = r.task_id"
    " where tf.started_at <= r.completed_at"
)


def _locate(name: str, counts: str, parent: tuple[str, ...], child: str, above: str) -> str:
    """CTEs ``{name}_cum`` and ``{name}``: each rank of ``above`` (columns ``p, which,
    *parent, k``: the ``k``-th value of its parent) located one level down, in the
    ``child`` whose cumulative counts (``counts``: ``*parent, child, n``) reach ``k``;
    ``{name}`` has the columns ``p, which, *parent, child, k`` (``k`` now within the child)."""
    keys = ", ".join(parent)
    on = " and ".join(f"c.{key} = s.{key}" for key in parent)
    return (
        f" {name}_cum as (select {keys}, {child}, n, (sum(n) over (partition by {keys}"
        f"  order by {child}))::bigint - n as before from {counts}),"
        f" {name} as materialized (select s.p, s.which, {', '.join(f's.{k}' for k in parent)},"
        f"  c.{child}, s.k - c.before as k from {above} s join {name}_cum c on {on}"
        "  and s.k > c.before and s.k <= c.before + c.n),"
    )


#: The first and last position of doubling ``p.doubling`` in histogram row ``t``'s buckets.
_DOUBLING_SLICE = (
    "case when x.i = 1 then 1 else t.doubling_ends[x.i - 1] + 1 end : t.doubling_ends[x.i]"
)

#: From the corrected counts to exact percentiles, one level at a time, so that each level
#: merges a bounded number of counts however many completions the nodes hold:
#:
#: * ``tops``: the period's histogram rows (a row per node and measure, or per node, project
#:   and measure); ``h0``: their counts per doubling, corrected by the tail's values
#:   (``dvs``); ``want``, ``ranks``: for each percentile, the two ranks percentile_cont
#:   interpolates between; ``at_doubling``: the doubling holding each, and its rank there;
#: * ``h1``: the counts of those doublings' 16 buckets (sliced from the same rows), then
#:   ``spots``: the bucket of each rank;
#: * ``cells``: the node rows of those buckets (sorted values, and how many fall in each of
#:   the bucket's 16 steps), ``steph``: their step counts, then ``stepspots``: the step;
#: * ``pool``: the values of the wanted steps only (a slice of each node's sorted values,
#:   less the stale values, plus the recomputed ones), whose ``k``-th is the rank's value;
#: * ``pct``: percentile_cont's interpolation, as PostgreSQL computes it.
#:
#: A node's count of one doubling or bucket fits an integer; summed as integers, the
#: aggregates accumulate in bigint rather than numeric.
PERCENTILES = (
    " dvs as materialized (select measure, v, sign, tb_analytics_duration_fine(v) / 256"
    "  as doubling, tb_analytics_duration_fine(v) / 16 as bucket,"
    "  tb_analytics_duration_fine(v) % 16 as step from dv),"
    " tops as materialized ({tops}),"
    " h0 as (select measure, doubling, sum(n)::bigint as n from ("
    "  select t.measure, d.doubling, d.n::integer from tops t"
    "  cross join unnest(t.doublings, t.doubling_counts) d (doubling, n)"
    "  union all select measure, doubling, sign from dvs"
    " ) x (measure, doubling, n) group by measure, doubling having sum(n) <> 0),"
    " want as (select m.measure, m.total, q.p, q.p * (m.total - 1)::float8 as pos"
    "  from (select measure, sum(n)::bigint as total from h0 group by measure) m"
    "  cross join (values (0.5::float8), (0.85::float8), (0.95::float8)) q (p)),"
    " ranks as materialized (select w.p, r.which, w.measure, r.k from want w"
    "  cross join lateral (values ('lo', floor(w.pos)::bigint + 1),"
    "   ('hi', ceil(w.pos)::bigint + 1)) r (which, k)),"
    + _locate("at_doubling", "h0", ("measure",), "doubling", "ranks")
    + " picked_doublings as materialized (select distinct measure, doubling from at_doubling),"
    " h1 as (select measure, doubling, bucket, sum(n)::bigint as n from ("
    "  select t.measure, p.doubling, b.bucket, b.n::integer from picked_doublings p"
    "  join tops t on t.measure = p.measure"
    "  cross join lateral (select array_position(t.doublings, p.doubling) as i) x"
    f"  cross join lateral unnest(t.buckets[{_DOUBLING_SLICE}],"
    f"   t.counts[{_DOUBLING_SLICE}]) b (bucket, n)"
    "  where x.i is not null"
    "  union all select d.measure, d.doubling, d.bucket, d.sign from dvs d"
    "  join picked_doublings p on p.measure = d.measure and p.doubling = d.doubling"
    " ) x (measure, doubling, bucket, n) group by 1, 2, 3 having sum(n) <> 0),"
    + _locate("spots", "h1", ("measure", "doubling"), "bucket", "at_doubling")
    # The bucket as the nodes' text key: a cast in the join would not be leakproof, so Row
    # Level Security would keep it out of the index condition.
    + " picked as materialized (select distinct measure, bucket, bucket::text as dim from spots),"
    " cells as materialized (select p.measure, p.bucket, x.vals, x.steps from picked p"
    "  cross join lateral ({cells}) x),"
    " steph as (select measure, bucket, step, sum(n)::bigint as n from ("
    "  select c.measure, c.bucket, s.i::int - 1, s.n from cells c"
    "  cross join unnest(c.steps) with ordinality s (n, i)"
    "  union all select d.measure, d.bucket, d.step, d.sign from dvs d"
    "  join picked p on p.measure = d.measure and p.bucket = d.bucket"
    " ) x (measure, bucket, step, n) group by 1, 2, 3 having sum(n) <> 0),"
    + _locate("stepspots", "steph", ("measure", "bucket"), "step", "spots")
    + " wanted as materialized (select distinct measure, bucket, step from stepspots),"
    " pool (measure, bucket, step, v) as ("
    "  (select w.measure, w.bucket, w.step, v.v from wanted w join cells c"
    "   on c.measure = w.measure and c.bucket = w.bucket"
    "   cross join lateral (select"
    "    (select coalesce(sum(x), 0) from unnest(c.steps[1:w.step]) x) as before,"
    "    (select coalesce(sum(x), 0) from unnest(c.steps[1:w.step + 1]) x) as upto) o"
    "   cross join lateral unnest(c.vals[o.before + 1 : o.upto]) v (v)"
    "   except all"
    "   select measure, bucket, step, v from dvs where sign < 0)"
    "  union all"
    "  select d.measure, d.bucket, d.step, d.v from dvs d join wanted w"
    "  on w.measure = d.measure and w.bucket = d.bucket and w.step = d.step where d.sign > 0),"
    " sorted as (select measure, bucket, step, array_agg(v order by v) as vs from pool"
    "  group by measure, bucket, step),"
    " valued as (select s.measure, s.p, s.which, x.vs[s.k] as v from stepspots s join sorted x"
    "  on x.measure = s.measure and x.bucket = s.bucket and x.step = s.step),"
    " pct as (select w.measure, array_agg(lo.v + (hi.v - lo.v) * (w.pos - floor(w.pos))"
    "  order by w.p) as vals, max(w.total) as total from want w"
    "  join valued lo on lo.measure = w.measure and lo.p = w.p and lo.which = 'lo'"
    "  join valued hi on hi.measure = w.measure and hi.p = w.p and hi.which = 'hi'"
    "  group by w.measure)"
)


async def durations(
    tx: Tx, team_id: UUID, period: Period, filters: Filters, touched: str, facts: str
) -> dict[str, Any] | None:
    """The row ``completed, lead_count, lead, cycle_count, cycle``, as
    ``repository.durations`` answers it; ``facts`` gives ``(task_id, created_at,
    started_at)`` rows of the :data:`REDO` tasks (several per task: the earliest of each
    counts)."""
    tops = _scoped(
        "r.measure, r.buckets, r.counts, r.doublings, r.doubling_counts, r.doubling_ends",
        "in ('lead', 'cycle')",
        filters,
        extra=" and r.dim = '*'",
    )
    cells = _scoped("r.vals, r.steps", "= p.measure", filters, extra=" and r.dim = p.dim")
    completed = _COMPLETED.format(counters=daily(("completed",), filters))
    sql = (
        f"{_corrections(filters, touched)},"
        " again_tf as (select task_id, min(created_at) as created_at,"
        f"  min(started_at) as started_at from ({facts}) x (task_id, created_at, started_at)"
        "  group by task_id),"
        " dv (measure, v, sign) as ("
        "  select 'lead', lead, -1 from stale where lead is not null"
        "  union all select 'cycle', cycle, -1 from stale where cycle is not null"
        f"  union all {REDO_DURATIONS}),"
        + PERCENTILES.format(tops=tops, cells=cells)
        + f" select {completed} as completed,"
        " coalesce((select total from pct where measure = 'lead'), 0) as lead_count,"
        " (select vals from pct where measure = 'lead') as lead,"
        " coalesce((select total from pct where measure = 'cycle'), 0) as cycle_count,"
        " (select vals from pct where measure = 'cycle') as cycle"
        " where (select usable from st)"
    )
    return await tx.fetch_one(sql, _node_params(team_id, period, filters))


async def time_tracked(
    tx: Tx,
    team_id: UUID,
    period: Period,
    filters: Filters,
    group_by: Literal["project", "user"],
) -> list[dict[str, Any]] | None:
    """Rows as ``repository.time_tracked`` answers them, from the daily counters: per user
    when grouping by user or filtering users, else the per-project totals. They are
    bucketed in the team's zone now: ``None`` if it changed since the period was resolved."""
    by_user = group_by == "user" or bool(filters.users)
    users = " and r.user_id = any(%(users)s::uuid[])" if filters.users else ""
    key = "r.user_id" if group_by == "user" else "r.project_id"
    sql = (
        "with zone as materialized (select t.time_zone = %(tz)s as same from team t"
        "  where t.id = %(team)s),"
        " tr as (select r.day, r.project_id, r.user_id, r.seconds, r.entries"
        "  from analytics_time_daily r where r.team_id = %(team)s"
        "  and r.day between %(d0)s and %(d1)s"
        f"  and r.user_id {'<>' if by_user else '='} '{NO_PROJECT}'::uuid"
        + users
        + projects(filters, "r.project_id")
        + " and (select same from zone))"
        f" select 'bucket' as part, {bucket('r.day', period)} as bucket, null::uuid as key,"
        "  sum(r.seconds)::bigint as seconds, sum(r.entries)::bigint as entries from tr r"
        "  group by 2 having sum(r.entries) <> 0"
        f" union all select 'group', null, {key}, sum(r.seconds)::bigint,"
        f"  sum(r.entries)::bigint from tr r group by {key} having sum(r.entries) <> 0"
        " union all select 'zone', null, null, null, null"
        "  where not coalesce((select same from zone), false)"
    )
    rows = await tx.fetch_all(sql, params(team_id, period, filters))
    return None if any(row["part"] == "zone" for row in rows) else rows

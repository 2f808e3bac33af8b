"""SQL fragments shared by the dashboards: the rollup state, the raw tail, filters, links.

Every dashboard is ONE statement (one snapshot) that reads the rollups and the *tail* (the
events the rollups do not contain yet) together, so each committed event is counted exactly
once (see the analytics migration). Its parts:

* ``st``: the watermark ``w``, the snapshot's ``xmax`` and ``usable``: whether the
  time-zone-dependent rollups are bucketed in the zone asked for.
* The tail of alias ``x``: the team's events with ``w <= tx_id < xmax`` (the upper bound
  holds for every visible row; it turns the condition into a range the planner estimates as
  small, so it takes the ``(team_id, tx_id, seq)`` index), then those of the period. For
  time-zone-dependent rollups that are not usable the lower bound is 0: raw events only.
* Raw mode (``raw=True``, for tests and the benchmark) reads events only: no rollup branch
  and no transaction-id bounds, the same answer computed the slow way.

Tails without a window (``window="all"``) serve facts whose events may lie outside the
period (a task's first start, its current assignees, the flow totals).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal
from uuid import UUID

from teamboard.analytics.period import Filters, Period

NO_PROJECT = UUID("00000000-0000-0000-0000-000000000000")

STATE = (
    "st as materialized ("
    " select w.tx_id as w, pg_snapshot_xmax(pg_current_snapshot()) as xmax,"
    "  coalesce((select s.time_zone = %(tz)s from analytics_state s"
    "   where s.team_id = %(team)s), false) as usable,"
    "  tb_analytics_sees_all() as whole"
    " from analytics_watermark w)"
)
#: Gate of a branch reading time-zone-dependent rollups (a one-time filter).
USABLE = "(select usable from st)"
COMPLETION = "{a}.to_category = 'completed' and {a}.from_category is distinct from 'completed'"

Window = Literal["period", "since", "all"]
Clause = Callable[[str], str]


def tail(source: str, alias: str, *, raw: bool, zoned: bool, window: Window = "period") -> str:
    """``FROM ... WHERE`` selecting from ``source`` the team's tail (raw: every event), as
    ``alias``, within ``window``; callers append their filters with `` and ...``.

    The tail is scanned on its own (``offset 0`` fences it) by team and transaction id only,
    in every partition: nothing else in its scan, so that even a generic plan (prepared
    statements switch to one after five runs, estimating every parameterized range at half
    a percent) takes the ``(team_id, tx_id, seq)`` index instead of combining the primary key's
    period range (a whole month of the team's events) with another index. The window and
    the filters apply to the few rows it returns. Raw mode scans the period's partitions.
    """
    bounds = []
    if window == "period":
        bounds.append(f"{alias}.occurred_at >= %(lo)s and {alias}.occurred_at < %(hi)s")
    elif window == "since":
        bounds.append(f"{alias}.occurred_at >= %(lo)s and {alias}.occurred_at < %(until)s")
    team = f"{alias}.team_id = %(team)s"
    if raw:
        return f"{source} {alias} where {' and '.join([team, *bounds])}"
    low = "case when usable then w else '0'::xid8 end" if zoned else "w"
    fenced = (
        f"(select * from {source} {alias} where {team}"
        f" and {alias}.tx_id >= (select {low} from st)"
        f" and {alias}.tx_id < (select xmax from st) offset 0) {alias}"
    )
    return f"{fenced} where {' and '.join(bounds) or 'true'}"


def merged(rollup: str, tail_part: str, *, raw: bool) -> str:
    """Rollup rows and tail rows of the same shape, or the raw rows alone."""
    return tail_part if raw else f"{rollup} union all {tail_part}"


def daily(
    metrics: tuple[str, ...], filters: Filters, dims: Clause | None = None, *, since: bool = False
) -> str:
    """Rows ``(day, metric, dim, value)`` of the daily counters of ``metrics`` in the period,
    or from its first day on (``since``), if the rollups are usable.

    Without a project filter, a caller who sees every project reads the per-team counters
    (summed over projects: far fewer rows); anyone else reads the per-project ones, which
    Row Level Security restricts to the projects they see.
    """
    days = "r.day >= %(d0)s" if since else "r.day between %(d0)s and %(d1)s"
    names = ", ".join(f"'{metric}'" for metric in metrics)  # constants of this package
    where = f" where r.team_id = %(team)s and r.metric in ({names}) and {days}"
    extra = f" and {dims('r.dim')}" if dims else ""
    per_project = (
        "select r.day, r.metric, r.dim, r.value from analytics_daily r"
        + where
        + extra
        + projects(filters, "r.project_id")
    )
    if filters.projects:
        return f"{per_project} and {USABLE}"
    per_team = "select r.day, r.metric, r.dim, r.value from analytics_team_daily r" + where + extra
    return (
        f"{per_team} and (select usable and whole from st)"
        f" union all {per_project} and (select usable and not whole from st)"
    )


def local_day(alias: str) -> str:
    return f"({alias}.occurred_at at time zone %(tz)s)::date"


def bucket(expression: str, period: Period) -> str:
    if period.bucket == "day":
        return expression
    return f"date_trunc('{period.bucket}', {expression})::date"


def projects(filters: Filters, column: str) -> str:
    return f" and {column} = any(%(projects)s::uuid[])" if filters.projects else ""


def kind_clause(filters: Filters) -> Clause | None:
    """The kind filter on a column, or None without one."""
    parts = []
    if filters.exact_kinds:
        parts.append("{c} = any(%(kinds)s::text[])")
    if filters.kind_patterns:
        parts.append("{c} like any(%(kind_patterns)s::text[])")
    if not parts:
        return None
    template = "(" + " or ".join(parts) + ")"
    return lambda column: template.format(c=column)


def kinds(filters: Filters, column: str) -> str:
    clause = kind_clause(filters)
    return f" and {clause(column)}" if clause else ""


def link_targets(filters: Filters) -> Clause | None:
    """Links named by the assignee and label filters, or None without such filters."""
    parts = []
    if filters.assignees:
        parts.append("({a}.kind = 'assignee' and {a}.target_id = any(%(assignees)s::uuid[]))")
    if filters.labels:
        parts.append("({a}.kind = 'label' and {a}.target_id = any(%(labels)s::uuid[]))")
    if not parts:
        return None
    template = "(" + " or ".join(parts) + ")"
    return lambda alias: template.format(a=alias)


def _latest(rollup: str, select: Clause, *, raw: bool) -> str:
    """The last change of each link among rollup rows and tail rows chosen by ``select``."""
    tail_part = (
        "select l.task_id, l.kind, l.target_id, l.active, l.occurred_at as changed_at,"
        f" l.event_id from {tail('analytics_link_fact', 'l', raw=raw, zoned=False, window='all')}"
        f" and {select('l')}"
    )
    return (
        "select distinct on (task_id, kind, target_id) task_id, kind, target_id, active"
        f" from ({merged(rollup, tail_part, raw=raw)}) x"
        " order by task_id, kind, target_id, changed_at desc, event_id desc"
    )


# WIRING POINT (links_to / links_of): once the task_assignee and task_label tables are
# merged, the current links may be read from them instead (``active`` = the row exists),
# which removes the one imprecision of the event-derived state: two concurrent changes of
# one task's links are ordered by their transactions' start (``occurred_at``), not by their
# commits. The events the tasks branch writes (task.created with assignee_ids and label_ids,
# task.assigned / task.unassigned, task.updated changes, label.deleted) already feed it.


def links_to(select: Clause, *, raw: bool) -> str:
    """Current task links to the targets chosen by ``select``: ``(task_id, kind, target_id,
    active)``, the last change by ``(occurred_at, event id)`` among rollup and tail."""
    rollup = (
        "select l.task_id, l.kind, l.target_id, l.active, l.changed_at, l.event_id"
        f" from analytics_task_link l where l.team_id = %(team)s and {select('l')}"
    )
    return _latest(rollup, select, raw=raw)


def links_of(tasks: str, kind: str, *, raw: bool) -> str:
    """Current ``kind`` links of the tasks of CTE ``tasks``: one index probe per task
    (``offset 0`` keeps the lateral subquery from being flattened into a hash join that
    would read every link of the team)."""
    rollup = (
        "select l.task_id, l.kind, l.target_id, l.active, l.changed_at, l.event_id"
        f" from (select distinct task_id from {tasks}) t cross join lateral ("
        "  select * from analytics_task_link l where l.team_id = %(team)s"
        f"  and l.task_id = t.task_id and l.kind = '{kind}' offset 0) l"
    )
    return _latest(
        rollup,
        lambda a: f"{a}.kind = '{kind}' and {a}.task_id in (select task_id from {tasks})",
        raw=raw,
    )


def matching_tasks(filters: Filters, *, raw: bool) -> str:
    """CTEs ``fl`` and ``matching`` (the tasks with a wanted assignee and a wanted label),
    followed by a comma; empty without assignee or label filters."""
    select = link_targets(filters)
    if select is None:
        return ""
    having = []
    if filters.assignees:
        having.append("bool_or(kind = 'assignee')")
    if filters.labels:
        having.append("bool_or(kind = 'label')")
    return (
        f"fl as ({links_to(select, raw=raw)}),"
        " matching as (select task_id from fl where active group by task_id"
        f" having {' and '.join(having)}),"
    )


def only_matching(filters: Filters, column: str) -> str:
    if link_targets(filters) is None:
        return ""
    return f" and {column} in (select task_id from matching)"


def completed(filters: Filters, *, raw: bool) -> str:
    """Completions in the period with the facts the rollups hold of their task: ``(task_id,
    completed_at, lead, cycle, assignee_ids, stored)``. The tail's completions (all of them
    in raw mode) have ``stored`` false and no facts: the caller computes those."""
    rollup = (
        "select c.task_id, c.completed_at, c.lead_seconds, c.cycle_seconds, c.assignee_ids,"
        " true from analytics_completion c"
        " where c.team_id = %(team)s and c.completed_at >= %(lo)s and c.completed_at < %(hi)s"
        + projects(filters, "c.project_id")
    )
    tail_part = (
        "select f.subject_id, f.occurred_at, null::float8, null::float8, null::uuid[], false"
        f" from {tail('analytics_event_fact', 'f', raw=raw, zoned=False)}"
        " and f.subject_id is not null"
        f" and {COMPLETION.format(a='f')}" + projects(filters, "f.project_id")
    )
    return merged(rollup, tail_part, raw=raw)


def completions(filters: Filters, *, raw: bool) -> str:
    """Completions in the period: ``(task_id, completed_at)``."""
    return (
        f"select task_id, completed_at from ({completed(filters, raw=raw)})"
        " c (task_id, completed_at, lead, cycle, assignee_ids, stored)"
    )


def completed_tasks(filters: Filters, touched: str, *, raw: bool) -> str:
    """CTEs ``touched`` (the tasks whose facts the tail changes, from query ``touched``; none
    in raw mode), ``cof`` (the period's completions passing the filters: ``task_id,
    completed_at, lead, cycle, assignee_ids, stored``) and ``redo`` (those whose stored
    facts cannot be used: the tail's, and the touched tasks'), after ``matching_tasks``.

    The rollups keep each completion's facts current as of the watermark (the fold
    refreshes them for every task it touches), so only ``redo`` needs its task's facts
    computed: a few rows, whatever the period holds. ``touched`` is read once and hashed
    (``not in`` over a materialized set without NULLs), never once per completion.
    """
    return (
        f"{matching_tasks(filters, raw=raw)}"
        " touched (task_id) as materialized (select task_id from"
        f" ({'select null::uuid where false' if raw else touched}) t (task_id)"
        " where task_id is not null),"
        f" co (task_id, completed_at, lead, cycle, assignee_ids, stored) as"
        f" ({completed(filters, raw=raw)}),"
        " cof as (select co.task_id, co.completed_at, co.lead, co.cycle, co.assignee_ids,"
        "  co.stored and co.task_id not in (select t.task_id from touched t)"
        f"  as stored from co where true{only_matching(filters, 'co.task_id')}),"
        " redo as (select task_id, completed_at from cof where not stored)"
    )


def params(team_id: UUID, period: Period, filters: Filters, **extra: Any) -> dict[str, Any]:
    return {
        "team": team_id,
        "tz": period.time_zone,
        "d0": period.start,
        "d1": period.end,
        "lo": period.lo,
        "hi": period.hi,
        "projects": list(filters.projects),
        "kinds": filters.exact_kinds,
        "kind_patterns": filters.kind_patterns,
        "assignees": list(filters.assignees),
        "labels": list(filters.labels),
        "users": list(filters.users),
        **extra,
    }

"""The dashboards, for REST and GraphQL alike: each takes the team context and a
:class:`DashboardQuery` and answers a plain dict (the shapes of ``analytics.schemas``).

Each dashboard runs two statements: the period in the team's time zone (which also tells a
non-member apart: 404), then the dashboard itself. ``raw=True`` computes the same answer
from the raw events (tests compare the two; the benchmark times them).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime
from typing import Any
from uuid import UUID

from teamboard.analytics import repository
from teamboard.analytics.period import DashboardQuery, Period
from teamboard.analytics.repository import GroupBy
from teamboard.deps import TeamContext
from teamboard.errors import NotFound

CATEGORIES = ("backlog", "unstarted", "started", "completed", "canceled")
#: Rate-limit units a dashboard spends, in REST and GraphQL alike (a list costs 5).
DASHBOARD_COST = 10


async def period(ctx: TeamContext, query: DashboardQuery) -> Period:
    resolved = await repository.resolve_period(ctx.tx, ctx.team_id, query.span, query.bucket)
    if resolved is None:
        raise NotFound()
    return resolved


async def events(ctx: TeamContext, query: DashboardQuery, *, raw: bool = False) -> dict[str, Any]:
    """Event counts by kind, per bucket and over the period."""
    p = await period(ctx, query)
    rows = await repository.event_counts(ctx.tx, ctx.team_id, p, query.filters, raw=raw)
    series: dict[date, dict[str, int]] = {bucket: {} for bucket in p.buckets()}
    totals: dict[str, int] = defaultdict(int)
    for row in rows:
        series[row["bucket"]][row["kind"]] = row["n"]
        totals[row["kind"]] += row["n"]
    return {
        "period": p.describe(),
        "total": sum(totals.values()),
        "by_kind": [
            {"kind": kind, "count": n}
            for kind, n in sorted(totals.items(), key=lambda item: (-item[1], item[0]))
        ],
        "series": [
            {"bucket": bucket, "total": sum(counts.values()), "counts": counts}
            for bucket, counts in series.items()
        ],
    }


async def actors(ctx: TeamContext, query: DashboardQuery, *, raw: bool = False) -> dict[str, Any]:
    """Distinct actors (members, or the ``actor`` of custom events) per bucket and over the
    period."""
    p = await period(ctx, query)
    rows = await repository.unique_actors(ctx.tx, ctx.team_id, p, query.filters, raw=raw)
    counts = {row["bucket"]: row["actors"] for row in rows}
    return {
        "period": p.describe(),
        "unique_actors": counts.get(None, 0),
        "series": [
            {"bucket": bucket, "unique_actors": counts.get(bucket, 0)} for bucket in p.buckets()
        ],
    }


async def tasks(ctx: TeamContext, query: DashboardQuery, *, raw: bool = False) -> dict[str, Any]:
    """Tasks created and completed (transitions into a completed status) per bucket."""
    p = await period(ctx, query)
    rows = await repository.task_counts(ctx.tx, ctx.team_id, p, query.filters, raw=raw)
    series = {bucket: {"created": 0, "completed": 0} for bucket in p.buckets()}
    for row in rows:
        series[row["bucket"]][row["metric"]] = row["n"]
    return {
        "period": p.describe(),
        "created": sum(b["created"] for b in series.values()),
        "completed": sum(b["completed"] for b in series.values()),
        "series": [{"bucket": bucket, **values} for bucket, values in series.items()],
    }


async def throughput(
    ctx: TeamContext, query: DashboardQuery, *, raw: bool = False
) -> dict[str, Any]:
    """Completions in the period per current assignee (a task counts for each of them)."""
    p = await period(ctx, query)
    rows = await repository.throughput(ctx.tx, ctx.team_id, p, query.filters, raw=raw)
    total = next(row["completed"] for row in rows if row["total"])
    by_assignee = [
        {"assignee_id": row["assignee_id"], "completed": row["completed"]}
        for row in rows
        if not row["total"]
    ]
    by_assignee.sort(
        key=lambda r: (-r["completed"], r["assignee_id"] is None, str(r["assignee_id"]))
    )
    return {"period": p.describe(), "completed": total, "by_assignee": by_assignee}


def _percentiles(count: int, values: list[float] | None) -> dict[str, Any]:
    p50, p85, p95 = values if values else (None, None, None)
    return {"count": count, "p50": p50, "p85": p85, "p95": p95}


async def durations(
    ctx: TeamContext, query: DashboardQuery, *, raw: bool = False
) -> dict[str, Any]:
    """Lead and cycle time percentiles of the period's completions."""
    p = await period(ctx, query)
    row = await repository.durations(ctx.tx, ctx.team_id, p, query.filters, raw=raw)
    return {
        "period": p.describe(),
        "completed": row["completed"],
        "lead_time": _percentiles(row["lead_count"], row["lead"]),
        "cycle_time": _percentiles(row["cycle_count"], row["cycle"]),
    }


async def flow(ctx: TeamContext, query: DashboardQuery, *, raw: bool = False) -> dict[str, Any]:
    """Cumulative flow: tasks per status category at the end of each bucket (the last
    bucket: at the end of the period's last day, or now when that is today)."""
    p = await period(ctx, query)
    rows = await repository.flow(ctx.tx, ctx.team_id, p, query.filters, raw=raw)
    now = dict.fromkeys(CATEGORIES, 0)
    changes: list[tuple[date, str, int]] = []
    for row in rows:
        if row["part"] == "total":
            now[row["category"]] = row["n"]
        else:
            changes.append((row["day"], row["category"], row["n"]))
    series = []
    for bucket in p.buckets():
        as_of = p.bucket_end(bucket)
        counts = dict(now)
        for day, category, n in changes:
            if day > as_of:
                counts[category] -= n
        series.append({"bucket": bucket, "as_of": as_of, **counts})
    return {"period": p.describe(), "series": series}


async def time_tracked(
    ctx: TeamContext, query: DashboardQuery, group_by: GroupBy, *, raw: bool = False
) -> dict[str, Any]:
    """Finished time entries started in the period, by project, user or label."""
    p = await period(ctx, query)
    rows = await repository.time_tracked(ctx.tx, ctx.team_id, p, query.filters, group_by, raw=raw)
    series = dict.fromkeys(p.buckets(), 0)
    entries = 0
    groups = []
    for row in rows:
        if row["part"] == "bucket":
            series[row["bucket"]] = row["seconds"]
            entries += row["entries"]
        else:
            groups.append({"key": row["key"], "seconds": row["seconds"], "entries": row["entries"]})
    groups.sort(key=lambda g: (-g["seconds"], g["key"] is None, str(g["key"])))
    return {
        "period": p.describe(),
        "group_by": group_by,
        "total_seconds": sum(series.values()),
        "entries": entries,
        "groups": groups,
        "series": [{"bucket": bucket, "seconds": seconds} for bucket, seconds in series.items()],
    }


#: The dashboards by their REST route name (``time`` also takes a grouping: not here).
BY_ROUTE = {
    "events": events,
    "actors": actors,
    "tasks": tasks,
    "throughput": throughput,
    "cycle-time": durations,
    "flow": flow,
}


async def drilldown(
    ctx: TeamContext,
    query: DashboardQuery,
    limit: int,
    after: tuple[datetime, UUID] | None,
) -> list[dict[str, Any]]:
    """The raw events of the period, newest first (``limit + 1`` rows, for the cursor)."""
    p = await period(ctx, query)
    return await repository.drilldown(ctx.tx, ctx.team_id, p, query.filters, limit, after)

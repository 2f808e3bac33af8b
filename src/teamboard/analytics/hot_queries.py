"""The analytics hot queries checked by ``teamboard db explain``: every dashboard over the
usual windows, with and without filters, and the drill-down."""

from __future__ import annotations

from datetime import timedelta

from teamboard.analytics import service
from teamboard.analytics.period import DashboardQuery, Filters, Span
from teamboard.deps import TeamContext
from teamboard.kit.hot_queries import HotQuery, Run, Sample
from teamboard.kit.pagination import CursorCodec


def _dashboard(name: str, days: int, **filters: object) -> Run:
    async def run(ctx: TeamContext, sample: Sample, cursors: CursorCodec) -> object:
        chosen = Filters(
            projects=(sample.project_id,) if filters.get("project") else (),
            assignees=(sample.user_id,) if filters.get("assignee") else (),
            kinds=("custom.*",) if filters.get("custom") else (),
        )
        query = DashboardQuery(Span(days=days), "day", chosen)
        if name == "time":
            return await service.time_tracked(ctx, query, "label")
        return await service.BY_ROUTE[name](ctx, query)

    return run


async def _drilldown(ctx: TeamContext, sample: Sample, cursors: CursorCodec) -> object:
    query = DashboardQuery(Span(days=30), "day", Filters(kinds=("custom.signup",)))
    return await service.drilldown(ctx, query, 50, None)


def _queries() -> list[HotQuery]:
    queries = []
    for name in ("events", "actors", "tasks", "throughput", "cycle-time", "flow", "time"):
        for days in (30, 90):
            queries.append(
                HotQuery(f"analytics {name} {days}d", _dashboard(name, days), timedelta(days))
            )
    queries += [
        HotQuery("analytics events 365d", _dashboard("events", 365), timedelta(365)),
        HotQuery(
            "analytics events 90d project custom.*",
            _dashboard("events", 90, project=True, custom=True),
            timedelta(90),
        ),
        HotQuery(
            "analytics tasks 90d assignee", _dashboard("tasks", 90, assignee=True), timedelta(90)
        ),
        HotQuery(
            "analytics cycle-time 90d project",
            _dashboard("cycle-time", 90, project=True),
            timedelta(90),
        ),
        HotQuery("analytics drill-down custom.signup 30d", _drilldown, timedelta(30)),
    ]
    return queries


QUERIES = _queries()

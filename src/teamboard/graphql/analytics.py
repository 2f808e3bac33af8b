"""``Team.analytics``: the analytics dashboards (docs/analytics.md) in GraphQL.

``analytics(window | start, end, bucket)`` takes the period and answers a
:class:`TeamAnalytics` whose fields are the dashboards; each dashboard field takes the
filters its REST route takes, no others (a filter a dashboard does not apply cannot be
sent, rather than being silently ignored or changing what the dashboard means). The period
and the filters are checked by the REST code (``parse_span``, ``Filters``: the same rules,
the same codes), and each field calls the REST service function with the team's context:
two SQL statements per dashboard, through Row Level Security, as in REST. A dashboard
answers the service's dict, read by name like every row (``default_resolver``).

Each dashboard declares the static cost of its REST route (10 rate units, at the default
``GRAPHQL_COST_PER_RATE_UNIT``), so many dashboards in one query are refused by the cost
limit before anything runs. Invalid arguments answer null with the REST error's code.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import date
from enum import Enum
from functools import partial
from typing import Any
from uuid import UUID

import strawberry
from strawberry import Parent
from strawberry.scalars import JSON

from teamboard.analytics import service
from teamboard.analytics.period import (
    MAX_FILTER_VALUES,
    DashboardQuery,
    Filters,
    parse_span,
)
from teamboard.config import Settings
from teamboard.deps import TeamContext
from teamboard.graphql.context import Ctx, RequestScope
from teamboard.graphql.pagination import Row
from teamboard.graphql.types import BigInt, resolved

#: A dashboard's query cost: what its REST route spends, in rate units, times the default
#: cost of a unit (10 x 100), so that one dashboard spends about the same in both APIs.
DASHBOARD_COST: int = (
    service.DASHBOARD_COST * Settings.model_fields["graphql_cost_per_rate_unit"].default
)

Dashboard = Callable[[TeamContext, DashboardQuery], Awaitable[Row]]


@strawberry.enum(description="Bucket size: weeks start on Monday, months on the 1st.")
class AnalyticsBucket(Enum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


@strawberry.enum(description="What time tracked is grouped by.")
class TimeGroupBy(Enum):
    PROJECT = "project"
    USER = "user"
    LABEL = "label"


@strawberry.type(description="The local days a dashboard covers (inclusive), in the team's zone.")
class AnalyticsPeriod:
    start: date
    end: date
    time_zone: str
    bucket: AnalyticsBucket


@strawberry.type
class KindCount:
    kind: str
    count: int


@strawberry.type
class EventBucket:
    bucket: date = strawberry.field(description="The bucket's first day.")
    total: int
    counts: JSON = strawberry.field(description="Events per kind (kinds with none left out).")


@strawberry.type
class EventDashboard:
    period: AnalyticsPeriod
    total: int
    by_kind: list[KindCount] = strawberry.field(description="Most frequent first.")
    series: list[EventBucket]


@strawberry.type
class ActorBucket:
    bucket: date
    unique_actors: int


@strawberry.type
class ActorDashboard:
    period: AnalyticsPeriod
    unique_actors: int = strawberry.field(description="Distinct actors over the whole period.")
    series: list[ActorBucket]


@strawberry.type
class TaskBucket:
    bucket: date
    created: int
    completed: int


@strawberry.type
class TaskDashboard:
    period: AnalyticsPeriod
    created: int
    completed: int
    series: list[TaskBucket]


@strawberry.type
class AssigneeThroughput:
    assignee_id: UUID | None = strawberry.field(description="Null: tasks without an assignee.")
    completed: int


@strawberry.type
class ThroughputDashboard:
    period: AnalyticsPeriod
    completed: int = strawberry.field(description="Every completion once.")
    by_assignee: list[AssigneeThroughput]


@strawberry.type(description="Percentiles in seconds (null when there is no value).")
class Percentiles:
    count: int
    p50: float | None
    p85: float | None
    p95: float | None


@strawberry.type
class DurationDashboard:
    period: AnalyticsPeriod
    completed: int
    lead_time: Percentiles = strawberry.field(description="Completion minus creation.")
    cycle_time: Percentiles = strawberry.field(
        description="Completion minus the first start before it."
    )


@strawberry.type
class FlowBucket:
    bucket: date
    as_of: date = strawberry.field(description="The day whose end the counts describe.")
    backlog: int
    unstarted: int
    started: int
    completed: int
    canceled: int


@strawberry.type
class FlowDashboard:
    period: AnalyticsPeriod
    series: list[FlowBucket]


@strawberry.type
class TimeGroup:
    key: UUID | None = strawberry.field(description="Project, user or label (null: no label).")
    seconds: BigInt
    entries: int


@strawberry.type
class TimeBucket:
    bucket: date
    seconds: BigInt


@strawberry.type
class TimeDashboard:
    period: AnalyticsPeriod
    group_by: TimeGroupBy
    total_seconds: BigInt
    entries: int
    groups: list[TimeGroup]
    series: list[TimeBucket]


async def _run(
    scope: RequestScope, team_id: UUID, dashboard: Dashboard, query: DashboardQuery
) -> Row:
    """The service call in the team's scope, as every service call of the schema runs
    (its two statements, with the caller's context for that team)."""
    team = scope.team(team_id)
    async with scope.use(team_id):
        return await dashboard(team.ctx, query)


@dataclass(frozen=True)
class Selection:
    """What ``Team.analytics`` answers: the team and its checked period."""

    team_id: UUID
    query: DashboardQuery

    def run(self, info: Ctx, dashboard: Dashboard, **filters: list[Any] | None) -> Awaitable[Row]:
        """``dashboard`` with ``filters`` (``Filters`` field names; None: no filter), checked
        now as REST checks them."""
        chosen = Filters(**{name: tuple(values or ()) for name, values in filters.items()})
        return _run(info.context, self.team_id, dashboard, replace(self.query, filters=chosen))


def team_analytics(
    root: Parent[Row],
    window: str | None = None,
    start: date | None = None,
    end: date | None = None,
    bucket: AnalyticsBucket = AnalyticsBucket.DAY,
) -> Selection:
    """The period, checked once for all the dashboards selected (REST's rules and codes);
    dashboards without buckets (throughput, cycle time) repeat the bucket asked."""
    span = parse_span(window, start, end)
    return Selection(root["id"], DashboardQuery(span, bucket.value))


def _event_dashboard(dashboard: Dashboard) -> Callable[..., Awaitable[Row]]:
    """The resolver of a dashboard of events (counts, actors): filtered by project and
    kind."""

    def resolve(
        root: Parent[Selection],
        info: Ctx,
        project_ids: list[UUID] | None = None,
        kinds: list[str] | None = None,
    ) -> Awaitable[Row]:
        return root.run(info, dashboard, projects=project_ids, kinds=kinds)

    return resolve


def _task_dashboard(dashboard: Dashboard) -> Callable[..., Awaitable[Row]]:
    """The resolver of a dashboard of tasks (created and completed, throughput,
    durations): filtered by project, current assignee and current label."""

    def resolve(
        root: Parent[Selection],
        info: Ctx,
        project_ids: list[UUID] | None = None,
        assignee_ids: list[UUID] | None = None,
        label_ids: list[UUID] | None = None,
    ) -> Awaitable[Row]:
        return root.run(
            info, dashboard, projects=project_ids, assignees=assignee_ids, labels=label_ids
        )

    return resolve


def cumulative_flow(
    root: Parent[Selection], info: Ctx, project_ids: list[UUID] | None = None
) -> Awaitable[Row]:
    return root.run(info, service.flow, projects=project_ids)


def tracked_time(
    root: Parent[Selection],
    info: Ctx,
    group_by: TimeGroupBy = TimeGroupBy.PROJECT,
    project_ids: list[UUID] | None = None,
    user_ids: list[UUID] | None = None,
    label_ids: list[UUID] | None = None,
) -> Awaitable[Row]:
    dashboard = partial(service.time_tracked, group_by=group_by.value)
    return root.run(info, dashboard, projects=project_ids, users=user_ids, labels=label_ids)


def _dashboard(resolver: Callable[..., Any], description: str) -> Any:
    """A dashboard field: priced like its REST route (see ``limits``)."""
    return resolved(resolver, description=description, cost=DASHBOARD_COST)


@strawberry.type(
    description="The team's dashboards over one period (docs/analytics.md). Each field is"
    f" two SQL statements and costs {DASHBOARD_COST:,} (a REST dashboard's rate units);"
    " null, with an error, when its filters are invalid. Values of one filter are ORed,"
    f" filters ANDed; at most {MAX_FILTER_VALUES} values per filter."
)
class TeamAnalytics:
    events: EventDashboard | None = _dashboard(
        _event_dashboard(service.events),
        "Events per kind and bucket (custom events included). `kinds`: exact kinds or"
        " prefixes such as `custom.*`.",
    )
    actors: ActorDashboard | None = _dashboard(
        _event_dashboard(service.actors),
        "Distinct actors per bucket and over the period: members, and for custom events the"
        " `actor` they name.",
    )
    tasks: TaskDashboard | None = _dashboard(
        _task_dashboard(service.tasks), "Tasks created, and completed, per bucket."
    )
    throughput: ThroughputDashboard | None = _dashboard(
        _task_dashboard(service.throughput),
        "Completions per current assignee (a task counts for each).",
    )
    cycle_time: DurationDashboard | None = _dashboard(
        _task_dashboard(service.durations),
        "Lead time and cycle time percentiles (p50, p85, p95) of the period's completions.",
    )
    flow: FlowDashboard | None = _dashboard(
        cumulative_flow, "Tasks per status category at the end of each bucket (cumulative flow)."
    )
    time_tracked: TimeDashboard | None = _dashboard(
        tracked_time, "Finished time entries, by their start, per project, user or label."
    )

"""REST routes: dashboards under ``/teams/{team_id}/analytics/...``, the drill-down list, and
custom event batches (``POST /teams/{team_id}/events``).

Dashboards take a period (``window`` = 7d, 30d, 90d or 365d, default 30d; or ``start`` and
``end``, local dates, inclusive) in the team's time zone, a ``bucket`` (day, week, month)
and filters (repeat a parameter for several values). They are exact and fresh: rollups plus
the events not folded yet. Each costs more than a plain read against the rate limits.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from teamboard.analytics import ingest, service
from teamboard.analytics.period import Bucket, DashboardQuery, Filters, Span, parse_span
from teamboard.analytics.repository import GroupBy
from teamboard.analytics.schemas import (
    ActorDashboard,
    CustomEventBatch,
    CustomEventsAccepted,
    DurationDashboard,
    EventDashboard,
    EventList,
    FlowDashboard,
    TaskDashboard,
    ThroughputDashboard,
    TimeDashboard,
)
from teamboard.deps import ServicesDep, TeamCtx
from teamboard.errors import BadRequest, Unprocessable
from teamboard.kit.body_limit import body_limit
from teamboard.kit.pagination import DEFAULT_LIMIT, Limit
from teamboard.kit.ratelimit import costs
from teamboard.kit.responses import ORJSONResponse

router = APIRouter(prefix="/teams/{team_id}", tags=["analytics"])

#: Rate-limit units of a batch of custom events (a list costs 5).
BATCH_COST = 10
DASHBOARD_COST = service.DASHBOARD_COST


def _span(
    window: Annotated[str | None, Query(description="7d, 30d, 90d or 365d")] = None,
    start: Annotated[date | None, Query(description="First local day")] = None,
    end: Annotated[date | None, Query(description="Last local day")] = None,
) -> Span:
    return parse_span(window, start, end)


SpanDep = Annotated[Span, Depends(_span)]
BucketQ = Annotated[Bucket, Query()]
Ids = Annotated[list[UUID] | None, Query()]
Kinds = Annotated[
    list[str] | None, Query(description="An event kind, or a prefix such as custom.*")
]


def _query(
    span: Span,
    bucket: Bucket = "day",
    *,
    project_id: list[UUID] | None = None,
    kind: list[str] | None = None,
    assignee_id: list[UUID] | None = None,
    label_id: list[UUID] | None = None,
    user_id: list[UUID] | None = None,
) -> DashboardQuery:
    filters = Filters(
        projects=tuple(project_id or ()),
        kinds=tuple(kind or ()),
        assignees=tuple(assignee_id or ()),
        labels=tuple(label_id or ()),
        users=tuple(user_id or ()),
    )
    return DashboardQuery(span, bucket, filters)


@router.get("/analytics/events", response_model=EventDashboard)
@costs(DASHBOARD_COST)
async def event_counts(
    ctx: TeamCtx,
    span: SpanDep,
    bucket: BucketQ = "day",
    project_id: Ids = None,
    kind: Kinds = None,
) -> Response:
    """Events per kind and bucket (custom events included)."""
    query = _query(span, bucket, project_id=project_id, kind=kind)
    return ORJSONResponse(await service.events(ctx, query))


@router.get("/analytics/actors", response_model=ActorDashboard)
@costs(DASHBOARD_COST)
async def unique_actors(
    ctx: TeamCtx,
    span: SpanDep,
    bucket: BucketQ = "day",
    project_id: Ids = None,
    kind: Kinds = None,
) -> Response:
    """Distinct actors per bucket and over the period: members, and for custom events the
    ``actor`` they name (``kind=custom.*`` counts the users of your product)."""
    query = _query(span, bucket, project_id=project_id, kind=kind)
    return ORJSONResponse(await service.actors(ctx, query))


@router.get("/analytics/tasks", response_model=TaskDashboard)
@costs(DASHBOARD_COST)
async def task_counts(
    ctx: TeamCtx,
    span: SpanDep,
    bucket: BucketQ = "day",
    project_id: Ids = None,
    assignee_id: Ids = None,
    label_id: Ids = None,
) -> Response:
    """Tasks created, and tasks completed (entering a completed status), per bucket."""
    query = _query(span, bucket, project_id=project_id, assignee_id=assignee_id, label_id=label_id)
    return ORJSONResponse(await service.tasks(ctx, query))


def _completions_query(
    span: SpanDep, project_id: Ids = None, assignee_id: Ids = None, label_id: Ids = None
) -> DashboardQuery:
    """The period and filters of the dashboards over completions (no buckets)."""
    return _query(span, project_id=project_id, assignee_id=assignee_id, label_id=label_id)


CompletionsQuery = Annotated[DashboardQuery, Depends(_completions_query)]


@router.get("/analytics/throughput", response_model=ThroughputDashboard)
@costs(DASHBOARD_COST)
async def throughput(ctx: TeamCtx, query: CompletionsQuery) -> Response:
    """Completions per current assignee of the task (a task counts for each)."""
    return ORJSONResponse(await service.throughput(ctx, query))


@router.get("/analytics/cycle-time", response_model=DurationDashboard)
@costs(DASHBOARD_COST)
async def cycle_time(ctx: TeamCtx, query: CompletionsQuery) -> Response:
    """Lead time and cycle time percentiles (p50, p85, p95, in seconds) of completions."""
    return ORJSONResponse(await service.durations(ctx, query))


@router.get("/analytics/flow", response_model=FlowDashboard)
@costs(DASHBOARD_COST)
async def cumulative_flow(
    ctx: TeamCtx, span: SpanDep, bucket: BucketQ = "day", project_id: Ids = None
) -> Response:
    """Work in progress by status category at the end of each bucket (cumulative flow)."""
    query = _query(span, bucket, project_id=project_id)
    return ORJSONResponse(await service.flow(ctx, query))


@router.get("/analytics/time", response_model=TimeDashboard)
@costs(DASHBOARD_COST)
async def time_tracked(
    ctx: TeamCtx,
    span: SpanDep,
    bucket: BucketQ = "day",
    group_by: Annotated[GroupBy, Query()] = "project",
    project_id: Ids = None,
    user_id: Ids = None,
    label_id: Ids = None,
) -> Response:
    """Time tracked (finished entries, by their start) per project, user or label."""
    query = _query(span, bucket, project_id=project_id, user_id=user_id, label_id=label_id)
    return ORJSONResponse(await service.time_tracked(ctx, query, group_by))


def _after(key: list[object] | None) -> tuple[datetime, UUID] | None:
    if key is None:
        return None
    try:
        at, event_id = key
        return datetime.fromisoformat(str(at)), UUID(str(event_id))
    except (TypeError, ValueError) as exc:
        raise BadRequest("The cursor is invalid for this list", code="invalid_cursor") from exc


@router.get("/analytics/drilldown", response_model=EventList)
async def drilldown(
    ctx: TeamCtx,
    services: ServicesDep,
    span: SpanDep,
    project_id: Ids = None,
    kind: Annotated[list[str] | None, Query(description="Exact event kinds")] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> Response:
    """The raw events behind a dashboard, newest first."""
    if any(k.endswith(".*") for k in kind or ()):
        raise Unprocessable("The drill-down takes exact kinds", code="invalid_kind")
    query = _query(span, project_id=project_id, kind=kind)
    scope = f"analytics-events:{ctx.team_id}"
    filters = {"span": span, "projects": query.filters.projects, "kinds": query.filters.kinds}
    async with ctx.cursor_for_members():
        after = _after(services.cursors.page(scope, filters, limit, cursor).after)
    rows = await service.drilldown(ctx, query, limit, after)
    return ORJSONResponse(
        services.cursors.envelope(scope, filters, rows, limit, ["occurred_at", "id"])
    )


def _inline(schema: dict[str, Any]) -> dict[str, Any]:
    """A model's JSON schema with its ``$defs`` inlined (to embed it in OpenAPI as is)."""
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return resolve(defs[node["$ref"].rsplit("/", 1)[-1]])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved


BATCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": _inline(CustomEventBatch.model_json_schema())}},
    }
}


#: A full batch (1,000 events with 4 KiB of properties each) is about 5 MiB of JSON: above
#: REQUEST_MAX_BYTES, so the route declares its own body limit.
BATCH_MAX_BYTES = 8 * 1024 * 1024


async def _batch(request: Request) -> CustomEventBatch:
    """The body, parsed and validated in one pass by pydantic (a batch is large: this is
    about twice as fast as FastAPI's JSON decoding followed by validation)."""
    try:
        return CustomEventBatch.model_validate_json(await request.body())
    except ValidationError as exc:
        errors = [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]
        raise RequestValidationError(errors) from exc


@router.post(
    "/events", status_code=201, response_model=CustomEventsAccepted, openapi_extra=BATCH_BODY
)
@costs(BATCH_COST)
@body_limit(BATCH_MAX_BYTES)
async def append_events(request: Request, ctx: TeamCtx) -> Response:
    """Append up to 1,000 ``custom.*`` events in one all-or-nothing write."""
    accepted = await ingest.append_batch(ctx, await _batch(request))
    return ORJSONResponse({"accepted": accepted}, status_code=201)

"""REST routes: timers, manual entries, edits and totals.

Timers: ``POST .../tasks/{task_id}/time-entries/start`` (409 ``timer_already_running`` while
the caller has one in the team), ``GET .../time-entries/running`` and
``POST .../time-entries/running/stop``. Lists and totals take ``from`` (inclusive) and ``to``
(exclusive) and select entries by their start; totals count finished entries.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Response

from teamboard.deps import Services, ServicesDep, TeamContext, TeamCtx
from teamboard.errors import BadRequest, Unprocessable
from teamboard.kit.etag import IfMatch, versioned
from teamboard.kit.instants import Instant
from teamboard.kit.pagination import DEFAULT_LIMIT, Limit
from teamboard.kit.responses import ORJSONResponse
from teamboard.time_tracking import service
from teamboard.time_tracking.schemas import (
    ManualEntryIn,
    ProjectTotals,
    TaskTotals,
    TimeEntryList,
    TimeEntryOut,
    TimeEntryPatch,
    TimerIn,
    UserTotals,
)

router = APIRouter(prefix="/teams/{team_id}", tags=["time entries"])
_KEY = ["started_at", "id"]


def date_range(
    start: Annotated[Instant | None, Query(alias="from")] = None,
    end: Annotated[Instant | None, Query(alias="to")] = None,
) -> dict[str, Any]:
    """``from`` (inclusive) and ``to`` (exclusive), both with a time zone."""
    if start is not None and end is not None and start >= end:
        raise Unprocessable("from must be before to", code="invalid_range")
    return {"from": start, "to": end}


Range = Annotated[dict[str, Any], Depends(date_range)]


def _after(key: list[Any] | None) -> tuple[datetime, UUID] | None:
    if key is None:
        return None
    try:
        started, entry_id = key
        return datetime.fromisoformat(started), UUID(entry_id)
    except (TypeError, ValueError) as exc:
        raise BadRequest("The cursor is invalid for this list", code="invalid_cursor") from exc


async def _page(
    ctx: TeamContext, services: Services, filters: dict[str, Any], limit: int, cursor: str | None
) -> Response:
    scope = f"time-entries:{ctx.team_id}"
    async with ctx.cursor_for_members():
        after = _after(services.cursors.page(scope, filters, limit, cursor).after)
    rows = await service.list_entries(ctx, filters, limit, after)
    return ORJSONResponse(services.cursors.envelope(scope, filters, rows, limit, _KEY))


@router.post("/tasks/{task_id}/time-entries/start", status_code=201, response_model=TimeEntryOut)
async def start_timer(task_id: UUID, ctx: TeamCtx, body: TimerIn | None = None) -> Response:
    entry = await service.start_timer(ctx, task_id, body.note if body else "")
    return versioned(entry, status_code=201)


@router.post("/tasks/{task_id}/time-entries", status_code=201, response_model=TimeEntryOut)
async def create_entry(
    task_id: UUID, body: ManualEntryIn, ctx: TeamCtx, services: ServicesDep
) -> Response:
    """A finished entry for the caller: ``started_at`` and ``ended_at`` or
    ``duration_seconds`` (at most TIME_ENTRY_MAX_SECONDS, not in the future)."""
    max_seconds = services.settings.time_entry_max_seconds
    return versioned(await service.create_entry(ctx, task_id, body, max_seconds), status_code=201)


@router.get("/tasks/{task_id}/time-entries", response_model=TimeEntryList)
async def list_task_entries(
    task_id: UUID,
    ctx: TeamCtx,
    services: ServicesDep,
    range_: Range,
    user_id: UUID | None = None,
    running: bool | None = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> Response:
    filters = {"task": task_id, "project": None, "user": user_id, "running": running, **range_}
    return await _page(ctx, services, filters, limit, cursor)


@router.get("/tasks/{task_id}/time-entries/totals", response_model=TaskTotals)
async def task_totals(task_id: UUID, ctx: TeamCtx, range_: Range) -> Response:
    return ORJSONResponse(await service.task_totals(ctx, task_id, range_))


@router.get("/projects/{project_id}/time-entries/totals", response_model=ProjectTotals)
async def project_totals(project_id: UUID, ctx: TeamCtx, range_: Range) -> Response:
    return ORJSONResponse(await service.project_totals(ctx, project_id, range_))


@router.get("/members/{user_id}/time-entries/totals", response_model=UserTotals)
async def user_totals(user_id: UUID, ctx: TeamCtx, range_: Range) -> Response:
    return ORJSONResponse(await service.user_totals(ctx, user_id, range_))


@router.get("/time-entries", response_model=TimeEntryList)
async def list_entries(
    ctx: TeamCtx,
    services: ServicesDep,
    range_: Range,
    task_id: UUID | None = None,
    project_id: UUID | None = None,
    user_id: UUID | None = None,
    running: bool | None = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> Response:
    """The team's entries the caller can see, newest start first, with filters."""
    filters = {
        "task": task_id,
        "project": project_id,
        "user": user_id,
        "running": running,
        **range_,
    }
    return await _page(ctx, services, filters, limit, cursor)


@router.get("/time-entries/running", response_model=TimeEntryOut)
async def running_timer(ctx: TeamCtx) -> Response:
    """The caller's running timer (404 ``no_running_timer`` when none runs)."""
    return versioned(await service.running_timer(ctx))


@router.post("/time-entries/running/stop", response_model=TimeEntryOut)
async def stop_timer(ctx: TeamCtx, services: ServicesDep) -> Response:
    """Stop the caller's timer; one left running longer than TIME_ENTRY_MAX_SECONDS stops
    at that duration."""
    max_seconds = services.settings.time_entry_max_seconds
    return versioned(await service.stop_timer(ctx, max_seconds))


@router.get("/time-entries/{entry_id}", response_model=TimeEntryOut)
async def get_entry(entry_id: UUID, ctx: TeamCtx) -> Response:
    """The entry, with its version as ``ETag``."""
    return versioned(await service.get_entry(ctx, entry_id))


@router.patch("/time-entries/{entry_id}", response_model=TimeEntryOut)
async def update_entry(
    entry_id: UUID,
    body: TimeEntryPatch,
    ctx: TeamCtx,
    services: ServicesDep,
    if_match: IfMatch = None,
) -> Response:
    """Change one's own entry (admins: any entry). With ``If-Match`` (the entry's ``ETag``)
    a stale version answers 412 ``precondition_failed``; stopping a timer changes it too."""
    max_seconds = services.settings.time_entry_max_seconds
    return versioned(await service.update_entry(ctx, entry_id, body, max_seconds, if_match))


@router.delete("/time-entries/{entry_id}", status_code=204)
async def delete_entry(entry_id: UUID, ctx: TeamCtx) -> Response:
    await service.delete_entry(ctx, entry_id)
    return Response(status_code=204)

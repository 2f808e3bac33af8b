"""REST route: the activity of a task."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Response

from teamboard.activity import service
from teamboard.activity.schemas import ActivityList
from teamboard.deps import ServicesDep, TeamCtx
from teamboard.kit.pagination import DEFAULT_LIMIT, Limit
from teamboard.kit.responses import ORJSONResponse

router = APIRouter(prefix="/teams/{team_id}/tasks/{task_id}", tags=["activity"])


@router.get("/activity", response_model=ActivityList)
async def task_activity(
    task_id: UUID,
    ctx: TeamCtx,
    services: ServicesDep,
    limit: Limit = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> Response:
    """What happened to the task, newest first, comment events included."""
    page = await service.task_activity(ctx, services.cursors, task_id, limit, cursor)
    return ORJSONResponse(page)

"""REST routes: tasks of a project and of the team.

Task responses carry the row version as ``ETag``; ``PATCH`` and ``move`` honour
``If-Match`` (412 ``precondition_failed`` when stale, 400 ``invalid_if_match`` when
malformed) and are unconditional without it.
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import Query, Response

from teamboard.deps import ServicesDep, TeamCtx
from teamboard.kit.etag import IfMatch, etag
from teamboard.kit.hot_reads import ApiRouter
from teamboard.kit.responses import ORJSONResponse
from teamboard.tasks import service
from teamboard.tasks.listing import TaskQuery
from teamboard.tasks.repository import TaskDocument
from teamboard.tasks.schemas import MoveIn, TaskIn, TaskList, TaskOut, TaskPatch

router = ApiRouter(prefix="/teams/{team_id}", tags=["tasks"])
ListQuery = Annotated[TaskQuery, Query()]


def _task(task: TaskDocument, status_code: int = 200) -> Response:
    return Response(
        task.json,
        status_code=status_code,
        headers={"ETag": etag(task.version)},
        media_type="application/json",
    )


@router.post("/projects/{project_id}/tasks", status_code=201, response_model=TaskOut)
async def create_task(project_id: UUID, body: TaskIn, ctx: TeamCtx) -> Response:
    """Create a task numbered ``<project key>-<next number>`` at the end of its status."""
    task = await service.create_task(ctx, project_id, body)
    response = _task(task, 201)
    response.headers["Location"] = f"/api/v1/teams/{ctx.team_id}/tasks/{task.id}"
    return response


@router.hot_get("/projects/{project_id}/tasks", response_model=TaskList)
async def list_project_tasks(
    project_id: UUID, ctx: TeamCtx, services: ServicesDep, query: ListQuery
) -> Response:
    """Live tasks of the project (see ``teamboard.tasks.listing`` for sorts and filters)."""
    return ORJSONResponse(await service.list_tasks(ctx, services.cursors, project_id, query))


@router.hot_get("/tasks", response_model=TaskList)
async def list_team_tasks(ctx: TeamCtx, services: ServicesDep, query: ListQuery) -> Response:
    """Live tasks of every project of the team the caller can see."""
    return ORJSONResponse(await service.list_tasks(ctx, services.cursors, None, query))


@router.get("/tasks/by-key/{key}", response_model=TaskOut)
async def get_task_by_key(key: str, ctx: TeamCtx) -> Response:
    """The task ``ENG-42``."""
    return _task(await service.get_task_by_key(ctx, key))


@router.hot_get("/tasks/{task_id}", response_model=TaskOut)
async def get_task(task_id: UUID, ctx: TeamCtx) -> Response:
    """The task with its assignees and labels: one SQL statement (RLS decides: 404)."""
    return _task(await service.get_task(ctx, task_id))


@router.patch("/tasks/{task_id}", response_model=TaskOut)
async def update_task(
    task_id: UUID, body: TaskPatch, ctx: TeamCtx, if_match: IfMatch = None
) -> Response:
    return _task(await service.update_task(ctx, task_id, body, if_match))


@router.post("/tasks/{task_id}/move", response_model=TaskOut)
async def move_task(
    task_id: UUID, body: MoveIn, ctx: TeamCtx, if_match: IfMatch = None
) -> Response:
    """Manual ordering: put the task before or after another, or at the end of a status."""
    return _task(await service.move_task(ctx, task_id, body, if_match))


@router.delete("/tasks/{task_id}", status_code=204)
async def delete_task(task_id: UUID, ctx: TeamCtx) -> Response:
    """Soft delete, with the task's live subtasks."""
    await service.delete_task(ctx, task_id)
    return Response(status_code=204)


@router.post("/tasks/{task_id}/restore", response_model=TaskOut)
async def restore_task(task_id: UUID, ctx: TeamCtx, services: ServicesDep) -> Response:
    """Undo a delete (with the subtasks deleted along with the task), within
    ``TRASH_RETENTION_DAYS``."""
    retention_days = services.settings.trash_retention_days
    return _task(await service.restore_task(ctx, task_id, retention_days))

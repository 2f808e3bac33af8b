"""REST routes: the statuses of a project (its workflow)."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Response

from teamboard.deps import ServicesDep, TeamCtx
from teamboard.kit.etag import IfMatch, versioned
from teamboard.kit.keyset import as_int, as_uuid, typed_key
from teamboard.kit.pagination import DEFAULT_LIMIT, Limit
from teamboard.kit.responses import ORJSONResponse
from teamboard.projects import service as projects
from teamboard.projects import statuses, statuses_repository
from teamboard.projects.schemas import StatusIn, StatusList, StatusOrder, StatusOut, StatusPatch

router = APIRouter(prefix="/teams/{team_id}/projects/{project_id}/statuses", tags=["statuses"])


@router.get("", response_model=StatusList)
async def list_statuses(
    project_id: UUID,
    ctx: TeamCtx,
    services: ServicesDep,
    limit: Limit = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> Response:
    """The workflow in order."""
    await projects.get_project(ctx, project_id)
    scope = f"statuses:{ctx.team_id}:{project_id}"
    page = services.cursors.page(scope, {}, limit, cursor)
    after = typed_key(page.after, [as_int, as_uuid])
    rows = await statuses_repository.list_statuses(ctx.tx, project_id, limit, after)
    return ORJSONResponse(services.cursors.envelope(scope, {}, rows, limit, ["position", "id"]))


@router.post("", status_code=201, response_model=StatusOut)
async def create_status(project_id: UUID, body: StatusIn, ctx: TeamCtx) -> Response:
    """Add a status at the end of the workflow."""
    return versioned(await statuses.create_status(ctx, project_id, body), status_code=201)


@router.put("/order", status_code=204)
async def reorder_statuses(project_id: UUID, body: StatusOrder, ctx: TeamCtx) -> Response:
    """Reorder the workflow: ``status_ids`` lists every status once, in the new order."""
    await statuses.reorder_statuses(ctx, project_id, body.status_ids)
    return Response(status_code=204)


@router.patch("/{status_id}", response_model=StatusOut)
async def rename_status(
    project_id: UUID, status_id: UUID, body: StatusPatch, ctx: TeamCtx, if_match: IfMatch = None
) -> Response:
    """Rename. With ``If-Match`` (the status's ``ETag``, or its ``version`` from a list) a
    stale version answers 412 ``precondition_failed``; a reorder changes the version too."""
    return versioned(await statuses.rename_status(ctx, project_id, status_id, body.name, if_match))


@router.delete("/{status_id}", status_code=204)
async def delete_status(
    project_id: UUID,
    status_id: UUID,
    ctx: TeamCtx,
    move_to: Annotated[UUID, Query(description="The status that receives the tasks")],
) -> Response:
    """Remove a status; its tasks move to the end of ``move_to`` in the same transaction."""
    await statuses.delete_status(ctx, project_id, status_id, move_to)
    return Response(status_code=204)

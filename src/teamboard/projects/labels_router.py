"""REST routes: the labels of a project."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Response

from teamboard.deps import ServicesDep, TeamCtx
from teamboard.kit.etag import IfMatch, versioned
from teamboard.kit.keyset import as_uuid, typed_key
from teamboard.kit.pagination import DEFAULT_LIMIT, Limit
from teamboard.kit.responses import ORJSONResponse
from teamboard.projects import labels, labels_repository
from teamboard.projects import service as projects
from teamboard.projects.schemas import LabelIn, LabelList, LabelOut, LabelPatch

router = APIRouter(prefix="/teams/{team_id}/projects/{project_id}/labels", tags=["labels"])


@router.get("", response_model=LabelList)
async def list_labels(
    project_id: UUID,
    ctx: TeamCtx,
    services: ServicesDep,
    limit: Limit = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> Response:
    """The project's labels by name."""
    await projects.get_project(ctx, project_id)
    scope = f"labels:{ctx.team_id}:{project_id}"
    page = services.cursors.page(scope, {}, limit, cursor)
    after = typed_key(page.after, [str, as_uuid])
    rows = await labels_repository.list_labels(ctx.tx, project_id, limit, after)
    return ORJSONResponse(services.cursors.envelope(scope, {}, rows, limit, ["name", "id"]))


@router.post("", status_code=201, response_model=LabelOut)
async def create_label(project_id: UUID, body: LabelIn, ctx: TeamCtx) -> Response:
    return versioned(await labels.create_label(ctx, project_id, body), status_code=201)


@router.patch("/{label_id}", response_model=LabelOut)
async def update_label(
    project_id: UUID, label_id: UUID, body: LabelPatch, ctx: TeamCtx, if_match: IfMatch = None
) -> Response:
    """Rename and/or recolor. With ``If-Match`` (the label's ``ETag``, or its ``version``
    from a list) a stale version answers 412 ``precondition_failed``."""
    return versioned(await labels.update_label(ctx, project_id, label_id, body, if_match))


@router.delete("/{label_id}", status_code=204)
async def delete_label(project_id: UUID, label_id: UUID, ctx: TeamCtx) -> Response:
    """Delete the label and detach it from its tasks."""
    await labels.delete_label(ctx, project_id, label_id)
    return Response(status_code=204)

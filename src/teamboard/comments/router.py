"""REST routes: comments on a task."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Response

from teamboard.comments import service
from teamboard.comments.schemas import CommentIn, CommentList, CommentOut, CommentPatch
from teamboard.deps import ServicesDep, TeamCtx
from teamboard.kit.etag import IfMatch, versioned
from teamboard.kit.pagination import DEFAULT_LIMIT, Limit
from teamboard.kit.responses import ORJSONResponse

router = APIRouter(prefix="/teams/{team_id}/tasks/{task_id}/comments", tags=["comments"])


@router.get("", response_model=CommentList)
async def list_comments(
    task_id: UUID,
    ctx: TeamCtx,
    services: ServicesDep,
    limit: Limit = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> Response:
    """The task's comments, oldest first (deleted ones are left out)."""
    page = await service.list_comments(ctx, services.cursors, task_id, limit, cursor)
    return ORJSONResponse(page)


@router.post("", status_code=201, response_model=CommentOut)
async def create_comment(task_id: UUID, body: CommentIn, ctx: TeamCtx) -> Response:
    """Comment in Markdown; ``@name`` or ``@email`` mentions members who can see the task."""
    return versioned(await service.create_comment(ctx, task_id, body.body), status_code=201)


@router.get("/{comment_id}", response_model=CommentOut)
async def get_comment(task_id: UUID, comment_id: UUID, ctx: TeamCtx) -> Response:
    """The comment, with its version as ``ETag``."""
    return versioned(await service.get_comment(ctx, task_id, comment_id))


@router.patch("/{comment_id}", response_model=CommentOut)
async def edit_comment(
    task_id: UUID, comment_id: UUID, body: CommentPatch, ctx: TeamCtx, if_match: IfMatch = None
) -> Response:
    """Replace the body (its author only). With ``If-Match`` (the comment's ``ETag``) a
    stale version answers 412 ``precondition_failed``."""
    return versioned(await service.edit_comment(ctx, task_id, comment_id, body.body, if_match))


@router.delete("/{comment_id}", status_code=204)
async def delete_comment(task_id: UUID, comment_id: UUID, ctx: TeamCtx) -> Response:
    """Delete a comment (its author, or an admin): its text is erased at once."""
    await service.delete_comment(ctx, task_id, comment_id)
    return Response(status_code=204)

"""REST routes: projects and project members."""

from __future__ import annotations

from uuid import UUID

from fastapi import Response

from teamboard.deps import ServicesDep, TeamCtx
from teamboard.kit.etag import IfMatch, versioned
from teamboard.kit.hot_reads import ApiRouter
from teamboard.kit.pagination import DEFAULT_LIMIT, Limit
from teamboard.kit.responses import ORJSONResponse
from teamboard.projects import repository, service
from teamboard.projects.schemas import (
    ProjectIn,
    ProjectList,
    ProjectMemberIn,
    ProjectMemberList,
    ProjectMemberOut,
    ProjectOut,
    ProjectPatch,
)

router = ApiRouter(prefix="/teams/{team_id}/projects", tags=["projects"])


@router.post("", status_code=201, response_model=ProjectOut)
async def create_project(body: ProjectIn, ctx: TeamCtx) -> Response:
    return versioned(await service.create_project(ctx, body), status_code=201)


@router.get("", response_model=ProjectList)
async def list_projects(
    ctx: TeamCtx,
    services: ServicesDep,
    limit: Limit = DEFAULT_LIMIT,
    cursor: str | None = None,
    include_archived: bool = False,
) -> Response:
    await ctx.require("guest")
    page = await services.cursors.id_page(
        f"projects:{ctx.team_id}",
        limit,
        cursor,
        lambda n, after: repository.list_projects(ctx.tx, n, after, include_archived),
        filters={"include_archived": include_archived},
    )
    return ORJSONResponse(page)


@router.hot_get("/{project_id}", response_model=ProjectOut)
async def get_project(project_id: UUID, ctx: TeamCtx) -> Response:
    """The project, with its version as ``ETag``."""
    await ctx.require("guest")
    return versioned(await service.get_project(ctx, project_id))


@router.patch("/{project_id}", response_model=ProjectOut)
async def update_project(
    project_id: UUID, body: ProjectPatch, ctx: TeamCtx, if_match: IfMatch = None
) -> Response:
    """Rename, describe, change visibility, or archive (``archived: true``) and unarchive.

    With ``If-Match`` (the ``ETag`` of a previous read) a stale version answers 412
    ``precondition_failed``; without it the update is unconditional.
    """
    return versioned(await service.update_project(ctx, project_id, body, if_match))


@router.delete("/{project_id}", status_code=204)
async def delete_project(project_id: UUID, ctx: TeamCtx) -> Response:
    await service.delete_project(ctx, project_id)
    return Response(status_code=204)


@router.get("/{project_id}/members", response_model=ProjectMemberList)
async def list_members(
    project_id: UUID,
    ctx: TeamCtx,
    services: ServicesDep,
    limit: Limit = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> Response:
    await ctx.require("guest")
    await service.get_project(ctx, project_id)
    page = await services.cursors.id_page(
        f"project-members:{project_id}",
        limit,
        cursor,
        lambda n, after: repository.list_members(ctx.tx, project_id, n, after),
        key="user_id",
    )
    return ORJSONResponse(page)


@router.post(
    "/{project_id}/members",
    status_code=201,
    response_model=ProjectMemberOut,
    responses={200: {"model": ProjectMemberOut, "description": "Already a member"}},
)
async def add_member(project_id: UUID, body: ProjectMemberIn, ctx: TeamCtx) -> Response:
    """Add a team member (201), or confirm that they already are one (200, no event)."""
    member, added = await service.add_member(ctx, project_id, body.user_id)
    return ORJSONResponse(member, status_code=201 if added else 200)


@router.delete("/{project_id}/members/{user_id}", status_code=204)
async def remove_member(project_id: UUID, user_id: UUID, ctx: TeamCtx) -> Response:
    await service.remove_member(ctx, project_id, user_id)
    return Response(status_code=204)

"""REST routes: the caller's notifications, and the followers of a task."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Response

from teamboard.deps import ServicesDep, TeamCtx
from teamboard.kit.etag import IfMatch, versioned
from teamboard.kit.pagination import DEFAULT_LIMIT, Limit
from teamboard.kit.responses import ORJSONResponse
from teamboard.notifications import service
from teamboard.notifications.schemas import (
    FollowerList,
    FollowerOut,
    NotificationList,
    NotificationOut,
    NotificationPatch,
    ReadAllIn,
    ReadAllOut,
    UnreadCount,
)

router = APIRouter(prefix="/teams/{team_id}/notifications", tags=["notifications"])
followers_router = APIRouter(prefix="/teams/{team_id}/tasks/{task_id}", tags=["notifications"])


@router.get("", response_model=NotificationList)
async def list_notifications(
    ctx: TeamCtx,
    services: ServicesDep,
    limit: Limit = DEFAULT_LIMIT,
    cursor: str | None = None,
    unread: bool = False,
) -> Response:
    """The caller's notifications in this team, newest first; ``unread=true`` for unread only."""
    page = await service.list_notifications(ctx, services.cursors, limit, cursor, unread)
    return ORJSONResponse(page)


@router.get("/unread-count", response_model=UnreadCount)
async def unread_count(ctx: TeamCtx) -> Response:
    return ORJSONResponse({"unread": await service.unread_count(ctx)})


@router.post("/read-all", response_model=ReadAllOut)
async def mark_all_read(ctx: TeamCtx, body: ReadAllIn | None = None) -> Response:
    """Mark every unread notification read, or those up to ``up_to`` (the newest id shown)."""
    updated = await service.mark_all_read(ctx, body.up_to if body else None)
    return ORJSONResponse({"updated": updated})


@router.patch("/{notification_id}", response_model=NotificationOut)
async def set_read(
    notification_id: UUID, body: NotificationPatch, ctx: TeamCtx, if_match: IfMatch = None
) -> Response:
    """Mark one notification read (``{"read": true}``) or unread. With ``If-Match`` (its
    ``version``) a stale version is ``412``."""
    return versioned(await service.set_read(ctx, notification_id, body.read, if_match))


@followers_router.get("/followers", response_model=FollowerList)
async def list_followers(
    task_id: UUID,
    ctx: TeamCtx,
    services: ServicesDep,
    limit: Limit = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> Response:
    page = await service.list_followers(ctx, services.cursors, task_id, limit, cursor)
    return ORJSONResponse(page)


@followers_router.put(
    "/followers/me",
    response_model=FollowerOut,
    responses={201: {"model": FollowerOut, "description": "Now following"}},
)
async def follow(task_id: UUID, ctx: TeamCtx) -> Response:
    """Follow the task (201), or confirm that the caller already does (200)."""
    follower, created = await service.follow_task(ctx, task_id)
    return ORJSONResponse(follower, status_code=201 if created else 200)


@followers_router.delete("/followers/me", status_code=204)
async def unfollow(task_id: UUID, ctx: TeamCtx) -> Response:
    """Stop following the task (204 whether or not the caller followed it)."""
    await service.unfollow_task(ctx, task_id)
    return Response(status_code=204)

"""REST routes: teams, members, invitations."""

from __future__ import annotations

from uuid import UUID

from fastapi import Response

from teamboard.auth import repository as users
from teamboard.deps import ServicesDep, TeamCtx, UserTx
from teamboard.errors import NotFound
from teamboard.idempotency import returns_secret
from teamboard.kit.etag import IfMatch, versioned
from teamboard.kit.hot_reads import ApiRouter
from teamboard.kit.pagination import DEFAULT_LIMIT, Limit
from teamboard.kit.responses import ORJSONResponse
from teamboard.teams import repository, service
from teamboard.teams.schemas import (
    AcceptIn,
    InvitationIn,
    InvitationList,
    InvitationOut,
    MemberList,
    MemberOut,
    MemberPatch,
    TeamIn,
    TeamList,
    TeamOut,
    TeamPatch,
)

router = ApiRouter(tags=["teams"])


@router.post("/teams", status_code=201, response_model=TeamOut)
async def create_team(body: TeamIn, ctx: UserTx) -> Response:
    team = await service.create_team(ctx.tx, ctx.user_id, body.name, body.time_zone)
    return ORJSONResponse(team, status_code=201)


@router.get("/teams", response_model=TeamList)
async def list_teams(
    ctx: UserTx, services: ServicesDep, limit: Limit = DEFAULT_LIMIT, cursor: str | None = None
) -> Response:
    page = await services.cursors.id_page(
        f"teams:{ctx.user_id}",
        limit,
        cursor,
        lambda n, after: repository.list_teams(ctx.tx, ctx.user_id, n, after),
    )
    return ORJSONResponse(page)


@router.hot_get("/teams/{team_id}", response_model=TeamOut)
async def get_team(ctx: TeamCtx) -> Response:
    return versioned(await service.get_team(ctx))


@router.patch("/teams/{team_id}", response_model=TeamOut)
async def update_team(body: TeamPatch, ctx: TeamCtx, if_match: IfMatch = None) -> Response:
    """Rename the team and/or change its time zone (admins). With ``If-Match`` (the
    ``ETag`` of the team) a stale version is ``412 precondition_failed``."""
    return versioned(await service.update_team(ctx, body, if_match))


@router.delete("/teams/{team_id}", status_code=204)
async def delete_team(ctx: TeamCtx) -> Response:
    await service.delete_team(ctx)
    return Response(status_code=204)


@router.get("/teams/{team_id}/members", response_model=MemberList)
async def list_members(
    ctx: TeamCtx, services: ServicesDep, limit: Limit = DEFAULT_LIMIT, cursor: str | None = None
) -> Response:
    await ctx.require("guest")
    page = await services.cursors.id_page(
        f"members:{ctx.team_id}",
        limit,
        cursor,
        lambda n, after: repository.list_members(ctx.tx, ctx.team_id, n, after),
        key="user_id",
    )
    return ORJSONResponse(page)


@router.patch("/teams/{team_id}/members/{user_id}", response_model=MemberOut)
async def change_role(
    user_id: UUID, body: MemberPatch, ctx: TeamCtx, if_match: IfMatch = None
) -> Response:
    """With ``If-Match`` (the member's ``version``) a stale version is ``412``."""
    return versioned(await service.change_role(ctx, user_id, body.role, if_match))


@router.delete("/teams/{team_id}/members/{user_id}", status_code=204)
async def remove_member(user_id: UUID, ctx: TeamCtx) -> Response:
    """Remove a member; a member removes themselves to leave the team."""
    await service.remove_member(ctx, user_id)
    return Response(status_code=204)


@router.post("/teams/{team_id}/invitations", status_code=201, response_model=InvitationOut)
@returns_secret
async def invite(body: InvitationIn, ctx: TeamCtx, services: ServicesDep) -> Response:
    """Invite by email; the token is shown once, in this answer."""
    return ORJSONResponse(await service.invite(services, ctx, body), status_code=201)


@router.get("/teams/{team_id}/invitations", response_model=InvitationList)
async def list_invitations(
    ctx: TeamCtx, services: ServicesDep, limit: Limit = DEFAULT_LIMIT, cursor: str | None = None
) -> Response:
    await ctx.require("admin")
    page = await services.cursors.id_page(
        f"invitations:{ctx.team_id}",
        limit,
        cursor,
        lambda n, after: repository.list_invitations(ctx.tx, ctx.team_id, n, after),
    )
    return ORJSONResponse(page)


@router.delete("/teams/{team_id}/invitations/{invitation_id}", status_code=204)
async def revoke_invitation(invitation_id: UUID, ctx: TeamCtx) -> Response:
    await service.revoke_invitation(ctx, invitation_id)
    return Response(status_code=204)


@router.post("/invitations/accept", response_model=TeamOut)
async def accept_invitation(body: AcceptIn, ctx: UserTx) -> Response:
    me = await users.get_me(ctx.tx, ctx.user_id)
    if me is None:
        raise NotFound()
    team_id = await service.accept_invitation(ctx.tx, ctx.user_id, me["email"], body.token)
    team = await repository.get_team(ctx.tx, team_id, ctx.user_id)
    return ORJSONResponse(team)

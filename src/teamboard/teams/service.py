"""Team rules: who may rename, delete, invite, change roles; the last owner always stays."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from teamboard.auth.service import normalize_email
from teamboard.db import Tx
from teamboard.deps import ROLE_RANK, Services, TeamContext
from teamboard.errors import Conflict, Forbidden, NotFound, Unprocessable
from teamboard.events.repository import append
from teamboard.kit.etag import changed_meanwhile, check_if_match
from teamboard.kit.ids import new_id
from teamboard.kit.secrets import hash_token
from teamboard.teams import repository
from teamboard.teams.schemas import InvitationIn, TeamPatch


async def _check_time_zone(tx: Tx, time_zone: str | None) -> None:
    if (
        time_zone is not None
        and time_zone != "UTC"
        and not await repository.is_time_zone(tx, time_zone)
    ):
        raise Unprocessable(
            "Unknown time zone: use an IANA name such as Europe/Paris", code="invalid_time_zone"
        )


async def create_team(tx: Tx, user_id: UUID, name: str, time_zone: str = "UTC") -> dict[str, Any]:
    await _check_time_zone(tx, time_zone)
    team_id = new_id()
    await tx.set_context(user_id=user_id, team_id=team_id)
    await repository.insert_team(tx, team_id, name, user_id, time_zone)
    await append(tx, "team.created", subject_id=team_id, payload={"name": name})
    team = await repository.get_team(tx, team_id, user_id)
    assert team is not None
    return team


async def get_team(ctx: TeamContext) -> dict[str, Any]:
    team = await repository.get_team(ctx.tx, ctx.team_id, ctx.user_id)
    if team is None:
        raise NotFound()
    return team


async def update_team(
    ctx: TeamContext, body: TeamPatch, if_match: str | None = None
) -> dict[str, Any]:
    """Rename the team or change its time zone (admins); ``if_match`` (the ``If-Match``
    header) must match the version. A new zone re-buckets the analytics rollups;
    dashboards stay exact meanwhile (they read raw events)."""
    await ctx.require("admin")
    version = None  # the team is read first only when a precondition needs its version
    if if_match is not None:
        version = check_if_match(if_match, (await get_team(ctx))["version"])
    await _check_time_zone(ctx.tx, body.time_zone)
    if not await repository.update_team(ctx.tx, ctx.team_id, body.name, body.time_zone, version):
        raise changed_meanwhile() if version is not None else NotFound()
    changes = body.model_dump(exclude_none=True)
    await append(ctx.tx, "team.updated", subject_id=ctx.team_id, payload=changes)
    return await get_team(ctx)


async def delete_team(ctx: TeamContext) -> None:
    await ctx.require("owner")
    await repository.delete_team(ctx.tx, ctx.team_id)


async def change_role(
    ctx: TeamContext, user_id: UUID, role: str, if_match: str | None = None
) -> dict[str, Any]:
    """Admins manage members and admins; only owners grant or take the owner role.
    ``if_match`` (the ``If-Match`` header) must match the membership's version (the
    membership lock keeps it from changing until the end)."""
    my_role = await ctx.require("admin")
    await repository.lock_membership(ctx.tx, ctx.team_id)
    found = await repository.get_member(ctx.tx, ctx.team_id, user_id)
    if found is None:
        raise NotFound()
    current = found["role"]
    if "owner" in (current, role) and my_role != "owner":
        raise Forbidden("Only owners can grant or remove the owner role", code="insufficient_role")
    check_if_match(if_match, found["version"])  # after the refusals a retry would get too
    if role == current:  # nothing changes: no write, no new version, no event
        return found
    if current == "owner" and role != "owner":
        await _keep_an_owner(ctx)
    if role == "guest" and current != "guest":
        await _keep_private_projects_managed(ctx, user_id)
    member = await repository.set_member_role(ctx.tx, ctx.team_id, user_id, role)
    assert member is not None
    await append(
        ctx.tx, "member.role_changed", subject_id=user_id, payload={"from": current, "to": role}
    )
    return member


async def remove_member(ctx: TeamContext, user_id: UUID) -> None:
    """Remove a member, or leave the team when ``user_id`` is the caller."""
    my_role = await ctx.require("guest")
    await repository.lock_membership(ctx.tx, ctx.team_id)
    current = await repository.get_member_role(ctx.tx, ctx.team_id, user_id)
    if current is None:
        raise NotFound()
    if user_id != ctx.user_id:
        await ctx.require("admin")
        if ROLE_RANK[current] > ROLE_RANK[my_role]:
            raise Forbidden("You cannot remove a member above your role", code="insufficient_role")
    if current == "owner":
        await _keep_an_owner(ctx)
    if current != "guest":
        await _keep_private_projects_managed(ctx, user_id)
    await append(
        ctx.tx,
        "member.left" if user_id == ctx.user_id else "member.removed",
        subject_id=user_id,
        payload={"role": current},
    )
    await repository.delete_member(ctx.tx, ctx.team_id, user_id)


async def _keep_private_projects_managed(ctx: TeamContext, user_id: UUID) -> None:
    """409 ``last_project_member`` when ``user_id`` is the last member who is not a guest of
    a private project: removed or demoted, they would leave it out of everyone's reach (see
    ``projects.service.remove_member``). Only a count is told: the caller may not see it."""
    count = await repository.private_projects_managed_only_by(ctx.tx, user_id)
    if count:
        raise Conflict(
            f"This member is the only one who can manage {count} private project(s):"
            " another member must be added to them first",
            code="last_project_member",
            extra={"private_projects": count},
        )


async def _keep_an_owner(ctx: TeamContext) -> None:
    if await repository.count_owners(ctx.tx, ctx.team_id) <= 1:
        raise Conflict("A team keeps at least one owner", code="last_owner")


async def invite(services: Services, ctx: TeamContext, body: InvitationIn) -> dict[str, Any]:
    await ctx.require("admin")
    email = normalize_email(body.email)
    if await repository.is_member_email(ctx.tx, ctx.team_id, email):
        raise Conflict("This person is already a member", code="already_member")
    token = "inv_" + secrets.token_urlsafe(32)
    invitation = await repository.replace_invitation(
        ctx.tx,
        team_id=ctx.team_id,
        invitation_id=new_id(),
        email=email,
        role=body.role,
        token_hash=hash_token(token),
        invited_by=ctx.user_id,
        expires_at=datetime.now(UTC) + timedelta(seconds=services.settings.invitation_ttl_seconds),
    )
    await append(
        ctx.tx, "invitation.created", subject_id=invitation["id"], payload={"role": body.role}
    )
    return {**invitation, "token": token}


async def revoke_invitation(ctx: TeamContext, invitation_id: UUID) -> None:
    await ctx.require("admin")
    if not await repository.revoke_invitation(ctx.tx, ctx.team_id, invitation_id):
        raise NotFound()
    await append(ctx.tx, "invitation.revoked", subject_id=invitation_id)


async def accept_invitation(tx: Tx, user_id: UUID, email: str, token: str) -> UUID:
    """Join the team of a pending invitation addressed to the caller's email.

    Unknown, expired, revoked, used and misaddressed tokens all answer the same 404.
    """
    token_hash = hash_token(token)
    await tx.set_lookup("app.invitation_token", token_hash)
    invitation = await repository.find_invitation_by_token(tx, token_hash)
    if (
        invitation is None
        or invitation["accepted_at"] is not None
        or invitation["revoked_at"] is not None
        or invitation["expires_at"] <= datetime.now(UTC)
        or invitation["email"] != email
    ):
        raise NotFound("The invitation is invalid or has expired", code="invitation_invalid")
    team_id: UUID = invitation["team_id"]
    await tx.set_context(user_id=user_id, team_id=team_id)
    if await repository.get_member_role(tx, team_id, user_id) is not None:
        raise Conflict("You are already a member of this team", code="already_member")
    await repository.join_by_invitation(tx, team_id, invitation["id"], user_id, invitation["role"])
    await append(tx, "member.joined", subject_id=user_id, payload={"role": invitation["role"]})
    return team_id

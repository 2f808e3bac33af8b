"""Project rules: members create projects, private ones are visible to their members only.

An archived project is read-only: its tasks, statuses and labels cannot change until it is
unarchived (409 ``project_archived``); only the project itself may be edited.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from teamboard.deps import TeamContext
from teamboard.errors import Conflict, NotFound
from teamboard.events.repository import append
from teamboard.kit.etag import check_if_match
from teamboard.kit.ids import new_id
from teamboard.projects import repository
from teamboard.projects.schemas import ProjectIn, ProjectPatch
from teamboard.teams import repository as teams


async def create_project(ctx: TeamContext, body: ProjectIn) -> dict[str, Any]:
    await ctx.require("member")
    project_id = new_id()
    await repository.insert_project(
        ctx.tx, project_id, body.key, body.name, body.description, body.visibility, ctx.user_id
    )
    if body.visibility == "private":
        await repository.add_member(ctx.tx, project_id, ctx.user_id)
    await repository.insert_default_workflow(ctx.tx, project_id)
    await append(
        ctx.tx,
        "project.created",
        subject_id=project_id,
        project_id=project_id,
        payload=body.model_dump(),
    )
    project = await repository.get_project(ctx.tx, project_id)
    assert project is not None
    return project


async def get_project(ctx: TeamContext, project_id: UUID) -> dict[str, Any]:
    project = await repository.get_project(ctx.tx, project_id)
    if project is None:
        raise NotFound()
    return project


async def writable_project(ctx: TeamContext, project_id: UUID) -> dict[str, Any]:
    """The project, for a member about to change its content (tasks, statuses, labels).

    Raises 403 for guests, 404 when the project is not visible, 409 when it is archived.
    The project row stays locked until the transaction ends, which serializes the changes
    that must not interleave (numbering, ordering, hierarchy, workflow edits).
    """
    await ctx.require("member")
    project = await repository.lock_project(ctx.tx, project_id)
    if project is None:
        raise NotFound()
    if project["archived_at"] is not None:
        raise Conflict("The project is archived; unarchive it first", code="project_archived")
    return project


async def update_project(
    ctx: TeamContext, project_id: UUID, body: ProjectPatch, if_match: str | None = None
) -> dict[str, Any]:
    """Apply the changes; ``if_match`` (the ``If-Match`` header) must match the version."""
    await ctx.require("member")
    current = await repository.lock_project(ctx.tx, project_id)
    if current is None:
        raise NotFound()
    check_if_match(if_match, current["version"])
    changes = {
        name: value
        for name, value in body.model_dump(exclude_unset=True).items()
        if value != (current["archived_at"] is not None if name == "archived" else current[name])
    }
    if not changes:  # nothing differs: no write, no new version, no event
        return current
    if body.visibility == "private" and not await repository.is_member(
        ctx.tx, project_id, ctx.user_id
    ):
        # Making a project private keeps whoever does it inside.
        await repository.add_member(ctx.tx, project_id, ctx.user_id)
    await repository.update_project(ctx.tx, project_id, changes)
    await append(
        ctx.tx, "project.updated", subject_id=project_id, project_id=project_id, payload=changes
    )
    return await get_project(ctx, project_id)


async def delete_project(ctx: TeamContext, project_id: UUID) -> None:
    await ctx.require("admin")
    # Lock first, in its own statement: a task creation holding the project then commits
    # before the soft delete's snapshot is taken, so its task is deleted too (a live task's
    # project is always live; reads by id rely on it).
    if await repository.lock_project(ctx.tx, project_id) is None:
        raise NotFound()
    if not await repository.soft_delete_project(ctx.tx, project_id):
        raise NotFound()
    await append(ctx.tx, "project.deleted", subject_id=project_id, project_id=project_id)


async def add_member(
    ctx: TeamContext, project_id: UUID, user_id: UUID
) -> tuple[dict[str, Any], bool]:
    """Add a team member to the project: the member, and whether they are new (adding a
    member again changes nothing and appends no event)."""
    await ctx.require("member")
    await get_project(ctx, project_id)
    already = await repository.is_member(ctx.tx, project_id, user_id)
    member = await repository.add_member(ctx.tx, project_id, user_id)
    if member is None:
        raise NotFound("No such team member", code="not_a_team_member")
    if not already:
        await append(ctx.tx, "project.member_added", subject_id=user_id, project_id=project_id)
    return member, not already


async def remove_member(ctx: TeamContext, project_id: UUID, user_id: UUID) -> None:
    """Remove a member; 409 ``last_project_member`` when that would leave a private project
    without a member who is not a guest. Nobody else sees a private project (owners and
    admins included), and guests cannot add members, so such a project, its tasks and
    files would be out of everyone's reach for good. The team's membership lock, then the
    project row, are taken first, so that neither another removal from the project nor a
    team route removing or demoting the other member can pass the same check at once."""
    await ctx.require("member")
    await teams.lock_membership(ctx.tx, ctx.team_id)
    project = await repository.lock_project(ctx.tx, project_id)
    if project is None:
        raise NotFound()
    if not await repository.is_member(ctx.tx, project_id, user_id):
        raise NotFound()
    if project["visibility"] == "private" and await repository.is_last_manager(
        ctx.tx, project_id, user_id
    ):
        raise Conflict(
            "A private project keeps at least one member who is not a guest: add another"
            " before removing this one",
            code="last_project_member",
        )
    # The event first: a member leaving a private project can no longer see it once the
    # row is gone, and the event's policy would then refuse its insert (this answered 404).
    await append(ctx.tx, "project.member_removed", subject_id=user_id, project_id=project_id)
    await repository.remove_member(ctx.tx, project_id, user_id)

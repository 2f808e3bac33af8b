"""Workflow rules: the statuses of a project.

Members (not guests) add, rename, reorder and remove statuses of projects they see, while
the project is not archived. A status's category is fixed at creation (changing it would
rewrite the completion of its tasks). Removing a status moves its tasks, deleted ones
included, to the end of a target status of the same project, in one transaction, and a
project always keeps at least one status. Every change holds the project lock, so two
concurrent removals cannot empty the workflow or move tasks into a removed status.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from teamboard.deps import TeamContext
from teamboard.errors import Conflict, NotFound, Unprocessable
from teamboard.events.repository import append
from teamboard.kit.etag import check_if_match
from teamboard.kit.ids import new_id
from teamboard.projects import statuses_repository as repository
from teamboard.projects.schemas import StatusIn
from teamboard.projects.service import writable_project
from teamboard.tasks import service as tasks


async def create_status(ctx: TeamContext, project_id: UUID, body: StatusIn) -> dict[str, Any]:
    """Append a status at the end of the workflow (409 ``already_exists`` on its name)."""
    await writable_project(ctx, project_id)
    status = await repository.insert_status(ctx.tx, new_id(), project_id, body.name, body.category)
    assert status is not None
    await append(
        ctx.tx,
        "status.created",
        subject_id=status["id"],
        project_id=project_id,
        payload=body.model_dump(),
    )
    return status


async def rename_status(
    ctx: TeamContext, project_id: UUID, status_id: UUID, name: str, if_match: str | None = None
) -> dict[str, Any]:
    """Rename; ``if_match`` (the ``If-Match`` header) must match the version (the project's
    lock, taken first, keeps it from changing until the end)."""
    await writable_project(ctx, project_id)
    current = await repository.get_status(ctx.tx, project_id, status_id)
    if current is None:
        raise NotFound()
    check_if_match(if_match, current["version"])
    if current["name"] == name:
        return current
    status = await repository.rename_status(ctx.tx, project_id, status_id, name)
    assert status is not None
    await append(
        ctx.tx,
        "status.updated",
        subject_id=status_id,
        project_id=project_id,
        payload={"fields": ["name"], "changes": {"name": {"from": current["name"], "to": name}}},
    )
    return status


async def reorder_statuses(ctx: TeamContext, project_id: UUID, ordered: list[UUID]) -> None:
    """Set the workflow order: ``ordered`` names every status of the project exactly once."""
    await writable_project(ctx, project_id)
    current = await repository.status_ids(ctx.tx, project_id)
    if len(ordered) != len(set(ordered)) or set(ordered) != set(current):
        raise Unprocessable(
            "status_ids must list every status of the project exactly once",
            code="invalid_status_order",
        )
    await repository.reorder(ctx.tx, project_id, ordered)
    await append(
        ctx.tx,
        "status.reordered",
        subject_id=project_id,
        project_id=project_id,
        payload={"status_ids": ordered},
    )


async def delete_status(ctx: TeamContext, project_id: UUID, status_id: UUID, move_to: UUID) -> None:
    """Remove a status, moving its tasks to ``move_to`` first."""
    await writable_project(ctx, project_id)
    current = await repository.status_ids(ctx.tx, project_id)
    if status_id not in current:
        raise NotFound()
    if len(current) == 1:
        raise Conflict("A project keeps at least one status", code="last_status")
    if move_to == status_id or move_to not in current:
        raise Unprocessable(
            "move_to must be another status of the same project", code="invalid_target_status"
        )
    moved = await tasks.reassign_status(ctx, project_id, status_id, move_to)
    deleted = await repository.delete_status(ctx.tx, project_id, status_id)
    assert deleted
    await append(
        ctx.tx,
        "status.deleted",
        subject_id=status_id,
        project_id=project_id,
        payload={"moved_to": move_to, "moved_tasks": moved},
    )

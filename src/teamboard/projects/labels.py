"""Label rules.

Labels belong to a project, not to the team: the REST contract nests them under the
project, they follow its visibility (a private project's labels stay private), and the
schema itself guarantees that a task only carries labels of its own project (the link's
foreign keys both carry ``project_id``). Names are unique per project, case-insensitively
(409 ``already_exists``). Members (not guests) manage them while the project is not
archived. Deleting a label detaches it from its tasks, whose version (ETag) changes.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from teamboard.deps import TeamContext
from teamboard.errors import NotFound
from teamboard.events.repository import append
from teamboard.kit.etag import check_if_match
from teamboard.kit.ids import new_id
from teamboard.projects import labels_repository as repository
from teamboard.projects.schemas import LabelIn, LabelPatch
from teamboard.projects.service import writable_project
from teamboard.tasks import service as tasks


async def create_label(ctx: TeamContext, project_id: UUID, body: LabelIn) -> dict[str, Any]:
    await writable_project(ctx, project_id)
    label = await repository.insert_label(ctx.tx, new_id(), project_id, body.name, body.color)
    assert label is not None
    await append(
        ctx.tx,
        "label.created",
        subject_id=label["id"],
        project_id=project_id,
        payload=body.model_dump(),
    )
    return label


async def update_label(
    ctx: TeamContext,
    project_id: UUID,
    label_id: UUID,
    body: LabelPatch,
    if_match: str | None = None,
) -> dict[str, Any]:
    """Rename and/or recolor; ``if_match`` (the ``If-Match`` header) must match the
    version (the project's lock, taken first, keeps it from changing until the end)."""
    await writable_project(ctx, project_id)
    current = await repository.get_label(ctx.tx, project_id, label_id)
    if current is None:
        raise NotFound()
    check_if_match(if_match, current["version"])
    wanted = {"name": body.name or current["name"], "color": body.color or current["color"]}
    changes = {
        name: {"from": current[name], "to": value}
        for name, value in wanted.items()
        if value != current[name]
    }
    if not changes:
        return current
    label = await repository.update_label(
        ctx.tx, project_id, label_id, wanted["name"], wanted["color"]
    )
    assert label is not None
    await append(
        ctx.tx,
        "label.updated",
        subject_id=label_id,
        project_id=project_id,
        payload={"fields": sorted(changes), "changes": changes},
    )
    return label


async def delete_label(ctx: TeamContext, project_id: UUID, label_id: UUID) -> None:
    await writable_project(ctx, project_id)
    if await repository.get_label(ctx.tx, project_id, label_id) is None:
        raise NotFound()
    detached = await tasks.detach_label(ctx, project_id, label_id)
    deleted = await repository.delete_label(ctx.tx, project_id, label_id)
    assert deleted
    await append(
        ctx.tx,
        "label.deleted",
        subject_id=label_id,
        project_id=project_id,
        payload={"detached_tasks": detached},
    )

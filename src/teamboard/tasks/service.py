"""Task rules.

Roles: every team member who can see a project reads its tasks (guests included, in the
projects they were added to); members, admins and owners write them; guests are read-only
(403 ``insufficient_role``), which the RLS write policies enforce as well. Visibility is
Row Level Security's: a task the caller cannot see answers 404, like a missing one.

Locks: changes to numbering, ordering (status, position) and hierarchy (parent, delete,
restore) first lock the project row, then the task; plain field edits lock the task only.
Taking them in that order everywhere avoids deadlocks, and serializing on the project
makes the cycle check and the gap choice see every committed change before them.

Soft delete: deleting a task deletes its live subtasks (recursively) with the same
``deleted_at`` stamp; restoring it restores exactly those, while a subtask deleted on its own
before stays deleted. A subtask cannot be restored while its parent is deleted (409
``parent_deleted``). Deleted tasks are hidden from lists and gets.

Events: ``task.created``; ``task.updated`` with ``fields`` (the names changed) and
``changes`` (``from``/``to`` of each, except the description whose text is not copied);
``task.assigned`` / ``task.unassigned`` with the ``user_ids`` added / removed (the hook for
notifications); ``task.moved``; ``task.deleted`` and ``task.restored`` with the
``subtask_ids`` that went along.
"""

from __future__ import annotations

import re
from typing import Any
from uuid import UUID

from teamboard.db import ForeignKeyViolation, Tx
from teamboard.deps import TeamContext
from teamboard.errors import Conflict, NotFound, Unprocessable
from teamboard.events.repository import append, append_each
from teamboard.kit.etag import check_if_match
from teamboard.kit.ids import new_id
from teamboard.kit.keyset import typed_key
from teamboard.kit.pagination import CursorCodec
from teamboard.projects import service as projects
from teamboard.tasks import listing, positions, repository
from teamboard.tasks.listing import TaskQuery
from teamboard.tasks.repository import TaskDocument
from teamboard.tasks.schemas import MoveIn, TaskIn, TaskPatch

_KEY = re.compile(r"^([A-Z][A-Z0-9]{1,9})-([1-9][0-9]{0,9})$")
_MAX_NUMBER = 2**31 - 1
#: Scalar fields compared and recorded one by one in ``task.updated``.
_SCALARS = ("title", "description", "priority", "due_at", "estimate")


async def get_task(ctx: TeamContext, task_id: UUID) -> TaskDocument:
    """The live task with assignees and labels, as the API answers it: one statement, RLS
    decides (404)."""
    task = await repository.get_task(ctx.tx, ctx.team_id, task_id)
    if task is None:
        raise NotFound()
    return task


def parse_key(key: str) -> tuple[str, int] | None:
    """``ENG-42`` as ``("ENG", 42)``; None when it cannot name a task."""
    match = _KEY.match(key)
    if match is None or int(match.group(2)) > _MAX_NUMBER:
        return None
    return match.group(1), int(match.group(2))


async def get_task_by_key(ctx: TeamContext, key: str) -> TaskDocument:
    """The live task ``ENG-42`` (project key, dash, number)."""
    parsed = parse_key(key)
    if parsed is None:
        raise NotFound()
    task = await repository.get_task_by_key(ctx.tx, ctx.team_id, *parsed)
    if task is None:
        raise NotFound()
    return task


async def list_tasks(
    ctx: TeamContext, cursors: CursorCodec, project_id: UUID | None, query: TaskQuery
) -> dict[str, Any]:
    """A page of the project's (or, without one, the team's) live tasks.

    One statement when the page has rows: rows under RLS prove that the caller sees the
    project (or is a team member). Only an empty page pays a second statement, to answer
    404 for a project or team the caller cannot see rather than an empty list.
    """
    filters, sort = query.filters(), query.sort
    key = listing.sort_key(sort, filters, project=project_id is not None)
    scope = f"tasks:{ctx.team_id}:{project_id or 'team'}"
    binding = {"sort": sort, **filters.binding}
    after = None
    if query.cursor:  # an empty cursor is the first page
        async with ctx.cursor_for_members():
            key_values = cursors.decode(scope, binding, query.cursor)
            after = typed_key(key_values, listing.cursor_converters(sort))
    items = await listing.fetch_page(
        ctx.tx, ctx.team_id, project_id, filters, sort, after, query.limit
    )
    if not items:
        if project_id is None:
            await ctx.require("guest")
        else:
            await projects.get_project(ctx, project_id)
    return listing.envelope(cursors, scope, binding, items, query.limit, key.column)


async def assignee_ids(tx: Tx, task_id: UUID) -> list[UUID]:
    """The current assignees of a task visible in ``tx``'s team context (for wiring
    notifications to ``task.assigned``); empty when none or not visible."""
    assert tx.team_id is not None
    return await repository.assignee_ids(tx, tx.team_id, task_id)


async def create_task(ctx: TeamContext, project_id: UUID, body: TaskIn) -> TaskDocument:
    await ctx.require("member")
    allocated = await repository.allocate_number(ctx.tx, project_id)
    if allocated is None:
        raise NotFound()
    if allocated["archived_at"] is not None:
        raise Conflict("The project is archived; unarchive it first", code="project_archived")
    if body.parent_id is not None:
        await _check_parent(ctx, project_id, None, body.parent_id)
    task_id = new_id()
    status_id = await repository.insert_task(
        ctx.tx,
        {
            "id": task_id,
            "project": project_id,
            "number": allocated["number"],
            "title": body.title,
            "description": body.description,
            "status": body.status_id,
            "priority": body.priority,
            "parent": body.parent_id,
            "due_at": body.due_at,
            "estimate": body.estimate,
            "created_by": ctx.user_id,
            "step": positions.STEP,
        },
        default_status=body.status_id is None,
    )
    if status_id is None:
        raise _invalid_status()
    await append(
        ctx.tx,
        "task.created",
        subject_id=task_id,
        project_id=project_id,
        payload={
            **body.model_dump(exclude={"description"}),
            "number": allocated["number"],
            "status_id": status_id,
        },
    )
    await _set_assignees(ctx, project_id, task_id, [], body.assignee_ids)
    await _set_labels(ctx, project_id, task_id, [], body.label_ids)
    return await get_task(ctx, task_id)


async def update_task(
    ctx: TeamContext, task_id: UUID, body: TaskPatch, if_match: str | None
) -> TaskDocument:
    """Apply the fields sent; a stale ``If-Match`` is 412. Nothing changed: no write."""
    changes = body.changes()
    current = await _lock(
        ctx, task_id, if_match, structural=bool({"status_id", "parent_id"} & changes.keys())
    )
    project_id = current["project_id"]
    values, recorded, category = await _new_values(ctx, current, changes)
    if not recorded:
        return await get_task(ctx, task_id)
    await repository.update_task(ctx.tx, task_id, values, completed=category == "completed")
    await append(
        ctx.tx,
        "task.updated",
        subject_id=task_id,
        project_id=project_id,
        payload={
            "fields": sorted(recorded),
            "changes": {k: v for k, v in recorded.items() if k != "description"},
        },
    )
    if "assignee_ids" in recorded:
        await _set_assignees(
            ctx, project_id, task_id, current["assignee_ids"], changes["assignee_ids"]
        )
    if "label_ids" in recorded:
        await _set_labels(ctx, project_id, task_id, current["label_ids"], changes["label_ids"])
    return await get_task(ctx, task_id)


async def _new_values(
    ctx: TeamContext, current: dict[str, Any], changes: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any], str]:
    """The task's columns after ``changes`` (validated), the ``from``/``to`` of each field
    that really changes, and the category of the resulting status."""
    task_id, project_id = current["id"], current["project_id"]
    values = {name: current[name] for name in ("status_id", "parent_id", "position", *_SCALARS)}
    recorded: dict[str, Any] = {}
    for name in _SCALARS:
        if name in changes and changes[name] != current[name]:
            values[name] = changes[name]
            recorded[name] = {"from": current[name], "to": changes[name]}
    category = current["category"]
    status_id = changes.get("status_id", current["status_id"])
    if status_id != current["status_id"]:
        category = await _status_category(ctx, project_id, status_id)
        values["status_id"] = status_id
        values["position"] = await positions.place(ctx.tx, status_id, task_id)
        recorded["status_id"] = {"from": current["status_id"], "to": status_id}
    parent_id = changes.get("parent_id", current["parent_id"])
    if parent_id != current["parent_id"]:
        if parent_id is not None:
            await _check_parent(ctx, project_id, task_id, parent_id)
        values["parent_id"] = parent_id
        recorded["parent_id"] = {"from": current["parent_id"], "to": parent_id}
    for name in ("assignee_ids", "label_ids"):
        if name in changes and set(changes[name]) != set(current[name]):
            recorded[name] = {"from": current[name], "to": sorted(changes[name], key=str)}
    return values, recorded, category


async def move_task(
    ctx: TeamContext, task_id: UUID, body: MoveIn, if_match: str | None
) -> TaskDocument:
    """Place the task before/after another one, or at the end of a status (see MoveIn)."""
    current = await _lock(ctx, task_id, if_match, structural=True)
    project_id = current["project_id"]
    anchor_id = body.before_id or body.after_id
    anchor: positions.Key | None = None
    status_id = body.status_id or current["status_id"]
    if anchor_id is not None:
        row = await repository.anchor(ctx.tx, project_id, anchor_id)
        if row is None or anchor_id == task_id:
            raise Unprocessable(
                "The anchor must be another live task of the project", code="invalid_anchor"
            )
        if body.status_id is not None and row["status_id"] != body.status_id:
            raise Unprocessable(
                "The anchor task is not in that status", code="anchor_not_in_status"
            )
        status_id = row["status_id"]
        anchor = positions.Key(row["position"], row["id"])
    category = current["category"]
    if status_id != current["status_id"]:
        category = await _status_category(ctx, project_id, status_id)
    side: positions.Side = "before" if body.before_id is not None else "after"
    position = await positions.place(ctx.tx, status_id, task_id, anchor, side)
    values = {
        **{name: current[name] for name in ("parent_id", *_SCALARS)},
        "status_id": status_id,
        "position": position,
    }
    await repository.update_task(ctx.tx, task_id, values, completed=category == "completed")
    await append(
        ctx.tx,
        "task.moved",
        subject_id=task_id,
        project_id=project_id,
        payload={
            "from_status_id": current["status_id"],
            "to_status_id": status_id,
            "position": position,
            "before_id": body.before_id,
            "after_id": body.after_id,
        },
    )
    return await get_task(ctx, task_id)


async def delete_task(ctx: TeamContext, task_id: UUID) -> None:
    """Soft-delete the task and its live subtasks (see the module docstring)."""
    project_id = await _lock_project_of(ctx, task_id, deleted=False)
    deleted = await repository.soft_delete_tree(ctx.tx, project_id, task_id)
    if not deleted:
        raise NotFound()
    await append(
        ctx.tx,
        "task.deleted",
        subject_id=task_id,
        project_id=project_id,
        payload={"subtask_ids": deleted[1:]},
    )


async def restore_task(ctx: TeamContext, task_id: UUID, retention_days: int) -> TaskDocument:
    """Restore a soft-deleted task with the subtasks deleted along with it; 404 once its
    ``TRASH_RETENTION_DAYS`` are over (``retention_days``), when the purge may delete it
    (an hour later: the purge and a restore never take the same rows)."""
    project_id = await _lock_project_of(ctx, task_id, deleted=True)
    task = await repository.deleted_task(ctx.tx, project_id, task_id, retention_days)
    if task is None:
        raise NotFound()
    if not task["parent_live"]:
        raise Conflict("The parent task is deleted; restore it first", code="parent_deleted")
    restored = await repository.restore_tree(ctx.tx, project_id, task_id, task["deleted_at"])
    await append(
        ctx.tx,
        "task.restored",
        subject_id=task_id,
        project_id=project_id,
        payload={"subtask_ids": restored[1:]},
    )
    return await get_task(ctx, task_id)


async def reassign_status(ctx: TeamContext, project_id: UUID, source: UUID, target: UUID) -> int:
    """Move every task of a status being removed to the end of ``target`` (the caller holds
    the project lock: see ``projects.service.writable_project``), with a
    ``task.status_reassigned`` event for each (the task's activity, webhooks). Not
    ``task.moved``: the analytics' flow reads a move's source category from its status row,
    which is deleted in this transaction, and would count each task as entering the target
    without leaving anything. Returns how many moved."""
    moved = await repository.reassign_status(ctx.tx, project_id, source, target, positions.STEP)
    await append_each(
        ctx.tx,
        "task.status_reassigned",
        [
            (
                row["id"],
                {
                    "from_status_id": source,
                    "to_status_id": target,
                    "position": row["position"],
                },
            )
            for row in moved
        ],
        project_id=project_id,
    )
    return len(moved)


async def detach_label(ctx: TeamContext, project_id: UUID, label_id: UUID) -> int:
    """Before a label is deleted (its task links cascade): bump the version of the tasks
    carrying it, since their label set changes. Returns how many."""
    return await repository.touch_labelled_tasks(ctx.tx, project_id, label_id)


# ---------------------------------------------------------------------------- helpers


async def _lock_project_of(ctx: TeamContext, task_id: UUID, *, deleted: bool) -> UUID:
    """Lock the project of a task (live, or soft-deleted with ``deleted``) for a member."""
    await ctx.require("member")
    project_id = await repository.task_project(ctx.tx, ctx.team_id, task_id, deleted=deleted)
    if project_id is None:
        raise NotFound()
    await projects.writable_project(ctx, project_id)
    return project_id


async def _lock(
    ctx: TeamContext, task_id: UUID, if_match: str | None, *, structural: bool
) -> dict[str, Any]:
    """Lock the task (after its project for ``structural`` changes) and check If-Match."""
    if structural:
        await _lock_project_of(ctx, task_id, deleted=False)
    else:
        await ctx.require("member")
    current = await repository.lock_task(ctx.tx, ctx.team_id, task_id)
    if current is None:
        raise NotFound()
    if current["archived_at"] is not None:
        raise Conflict("The project is archived; unarchive it first", code="project_archived")
    check_if_match(if_match, current["version"])
    return current


def _invalid_status() -> Unprocessable:
    return Unprocessable("status_id is not a status of this project", code="invalid_status")


async def _status_category(ctx: TeamContext, project_id: UUID, status_id: UUID) -> str:
    category = await repository.status_category(ctx.tx, project_id, status_id)
    if category is None:
        raise _invalid_status()
    return category


async def _check_parent(
    ctx: TeamContext, project_id: UUID, task_id: UUID | None, parent_id: UUID
) -> None:
    found = await repository.check_parent(ctx.tx, project_id, task_id, parent_id)
    if not found["live"]:
        raise Unprocessable("parent_id is not a live task of this project", code="invalid_parent")
    if found["cycle"]:
        raise Unprocessable("A task cannot be its own ancestor", code="parent_cycle")


async def _set_assignees(
    ctx: TeamContext, project_id: UUID, task_id: UUID, current: list[UUID], wanted: list[UUID]
) -> None:
    added = [user for user in wanted if user not in set(current)]
    removed = [user for user in current if user not in set(wanted)]
    if removed:
        await repository.remove_assignees(ctx.tx, task_id, removed)
        await append(
            ctx.tx,
            "task.unassigned",
            subject_id=task_id,
            project_id=project_id,
            payload={"user_ids": removed},
        )
    if added:
        try:
            assigned = await repository.add_assignees(ctx.tx, project_id, task_id, added)
        except ForeignKeyViolation:  # a member removed concurrently
            assigned = []
        refused = sorted(set(added) - set(assigned), key=str)
        if refused:
            raise Unprocessable(
                "Assignees must be team members who can see the project",
                code="invalid_assignee",
                extra={"user_ids": [str(user) for user in refused]},
            )
        await append(
            ctx.tx,
            "task.assigned",
            subject_id=task_id,
            project_id=project_id,
            payload={"user_ids": added},
        )


async def _set_labels(
    ctx: TeamContext, project_id: UUID, task_id: UUID, current: list[UUID], wanted: list[UUID]
) -> None:
    added = [label for label in wanted if label not in set(current)]
    removed = [label for label in current if label not in set(wanted)]
    if removed:
        await repository.remove_labels(ctx.tx, task_id, removed)
    if added:
        try:
            attached = await repository.add_labels(ctx.tx, project_id, task_id, added)
        except ForeignKeyViolation:  # a label deleted concurrently
            attached = []
        refused = sorted(set(added) - set(attached), key=str)
        if refused:
            raise Unprocessable(
                "Labels must belong to the task's project",
                code="invalid_label",
                extra={"label_ids": [str(label) for label in refused]},
            )

"""SQL for tasks, their assignees and labels, their hierarchy and their soft deletion.

Every statement runs under the caller's RLS context; ``team_id`` is also named explicitly
so that each lookup is an index scan on the ``(team_id, ...)`` keys.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple
from uuid import UUID

from teamboard.db import Tx
from teamboard.kit.responses import dumps

#: A task's list item: the JSON text the API answers for a task without its description,
#: kept on the row by the trigger ``task_write_summary`` (migration
#: ``2026-12-07_task_summaries``, which says what it holds). Its card (key, assignees and
#: labels) is made of columns of the row, kept by triggers (``2026-12-06_task_cards``): no
#: subquery per task, whatever the page. Reads hand the text to the encoder as it is.
SUMMARY = "t.summary"
FROM_LIVE = (
    " from task t join project p on p.team_id = t.team_id and p.id = t.project_id"
    " and p.deleted_at is null"
)


class TaskDocument(NamedTuple):
    """A task as the API answers it: ``json`` is the response body."""

    id: UUID
    version: int
    json: bytes


def _document(row: dict[str, Any]) -> TaskDocument:
    """The stored list item with the description added as its last field (``TaskOut``)."""
    body = b"".join(
        (row["summary"][:-1].encode(), b',"description":', dumps(row["description"]), b"}")
    )
    return TaskDocument(row["id"], row["version"], body)


async def get_task(tx: Tx, team_id: UUID, task_id: UUID) -> TaskDocument | None:
    """The live task, in one statement (None: not visible). One table: a live task's
    project is live (deleting a project soft-deletes its tasks, and a task of a deleted
    project cannot be restored)."""
    row = await tx.fetch_one(
        f"select t.id, t.version, {SUMMARY}, t.description from task t"
        " where t.team_id = %s and t.id = %s and t.deleted_at is null",
        (team_id, task_id),
    )
    return None if row is None else _document(row)


async def get_task_by_key(
    tx: Tx, team_id: UUID, project_key: str, number: int
) -> TaskDocument | None:
    row = await tx.fetch_one(
        f"select t.id, t.version, {SUMMARY}, t.description{FROM_LIVE}"
        " where t.team_id = %s and p.key = %s and t.number = %s and t.deleted_at is null",
        (team_id, project_key, number),
    )
    return None if row is None else _document(row)


async def assignee_ids(tx: Tx, team_id: UUID, task_id: UUID) -> list[UUID]:
    rows = await tx.fetch_all(
        "select user_id from task_assignee where team_id = %s and task_id = %s order by user_id",
        (team_id, task_id),
    )
    return [row["user_id"] for row in rows]


async def allocate_number(tx: Tx, project_id: UUID) -> dict[str, Any] | None:
    """Allocate the project's next task number (``ENG-42``); None if the project is gone.

    The update locks the project row until the transaction ends, which serializes
    concurrent creations, and a rolled-back transaction gives its number back: numbers
    have neither gaps nor duplicates. ``archived_at`` comes back so the caller can refuse
    (and roll back) in the same round trip.
    """
    return await tx.fetch_one(
        "update project set next_task_number = next_task_number + 1"
        " where id = %s and deleted_at is null"
        " returning next_task_number - 1 as number, archived_at",
        (project_id,),
    )


async def insert_task(tx: Tx, values: dict[str, Any], *, default_status: bool) -> UUID | None:
    """Insert a task at the end of its status; returns the status (None when it is not one
    of the project's).

    ``values``: id, project, number, title, description, status (ignored with
    ``default_status``: the first ``unstarted`` status of the workflow, else the first),
    priority, parent, due_at, estimate, created_by, step (the position gap).
    """
    status = (
        "s.id = (select d.id from status d where d.project_id = %(project)s"
        " order by d.category <> 'unstarted', d.position, d.id limit 1)"
        if default_status
        else "s.id = %(status)s and s.project_id = %(project)s"
    )
    row = await tx.fetch_one(
        "insert into task (id, project_id, number, title, description, status_id, priority,"
        " parent_id, due_at, estimate, position, created_by, completed_at)"
        " select %(id)s, %(project)s, %(number)s, %(title)s, %(description)s, s.id,"
        " %(priority)s, %(parent)s, %(due_at)s, %(estimate)s,"
        " coalesce((select max(e.position) from task e where e.team_id = s.team_id"
        " and e.status_id = s.id and e.deleted_at is null), 0) + %(step)s,"
        " %(created_by)s, case when s.category = 'completed' then now() end"
        f" from status s where {status} returning status_id",
        values,
    )
    return None if row is None else row["status_id"]


async def lock_task(tx: Tx, team_id: UUID, task_id: UUID) -> dict[str, Any] | None:
    """The live task locked for update, with what a change is checked against.

    Two statements: the lock, then what the change is checked against (the status's
    category, the project's archive state, the label set), read once the lock is held. In
    one statement, a wait for the lock behind a concurrent change is followed by a recheck
    of the locked row alone: the joined status was the old one (the task dropped: a false
    404) and the sub-selected labels those from before the change (which the edit then
    undid, or collided with)."""
    task = await tx.fetch_one(
        "select t.id, t.project_id, t.title, t.description, t.status_id, t.priority,"
        " t.parent_id, t.due_at, t.estimate, t.position, t.version, t.assignee_ids"
        " from task t where t.team_id = %s and t.id = %s and t.deleted_at is null"
        " for update of t",
        (team_id, task_id),
    )
    if task is None:
        return None
    checked = await tx.fetch_one(
        "select s.category, p.archived_at,"
        " array(select tl.label_id from task_label tl where tl.team_id = p.team_id"
        " and tl.project_id = p.id and tl.task_id = %(task)s order by tl.label_id)"
        " as label_ids"
        " from project p join status s on s.team_id = p.team_id and s.id = %(status)s"
        " where p.team_id = %(team)s and p.id = %(project)s and p.deleted_at is null",
        {
            "team": team_id,
            "task": task_id,
            "status": task["status_id"],
            "project": task["project_id"],
        },
    )
    return None if checked is None else {**task, **checked}


async def task_project(tx: Tx, team_id: UUID, task_id: UUID, *, deleted: bool) -> UUID | None:
    """The project of a live (or, with ``deleted``, a soft-deleted) visible task."""
    project_id: UUID | None = await tx.fetch_value(
        "select project_id from task where team_id = %s and id = %s"
        " and (deleted_at is not null) = %s",
        (team_id, task_id, deleted),
    )
    return project_id


async def anchor(tx: Tx, project_id: UUID, task_id: UUID) -> dict[str, Any] | None:
    """A live task of the project used as a placement anchor."""
    return await tx.fetch_one(
        "select id, position, status_id from task where team_id = %s and project_id = %s"
        " and id = %s and deleted_at is null",
        (tx.team_id, project_id, task_id),
    )


async def status_category(tx: Tx, project_id: UUID, status_id: UUID) -> str | None:
    category: str | None = await tx.fetch_value(
        "select category from status where project_id = %s and id = %s", (project_id, status_id)
    )
    return category


async def update_task(tx: Tx, task_id: UUID, values: dict[str, Any], *, completed: bool) -> None:
    """Write every editable column and bump the version; ``completed_at`` follows the
    category of the (new) status: kept (or set now) when completed, cleared otherwise."""
    await tx.execute(
        "update task set title = %(title)s, description = %(description)s,"
        " status_id = %(status_id)s, priority = %(priority)s, parent_id = %(parent_id)s,"
        " due_at = %(due_at)s, estimate = %(estimate)s, position = %(position)s,"
        " completed_at = case when %(completed)s then coalesce(completed_at, now()) end,"
        " version = version + 1"
        " where team_id = %(team)s and id = %(id)s",
        {
            **{
                key: values[key]
                for key in (
                    "title",
                    "description",
                    "status_id",
                    "priority",
                    "parent_id",
                    "due_at",
                    "estimate",
                    "position",
                )
            },
            "completed": completed,
            "team": tx.team_id,
            "id": task_id,
        },
    )


async def add_assignees(
    tx: Tx, project_id: UUID, task_id: UUID, user_ids: list[UUID]
) -> list[UUID]:
    """Assign the users who may see the project; returns those assigned.

    A user may see a team project when they are a team member other than a guest, and a
    private one (or, for a guest, any project) when they are one of its members: the same
    rule as the visibility policies.
    """
    rows = await tx.fetch_all(
        "insert into task_assignee (project_id, task_id, user_id)"
        " select p.id, %(task)s, m.user_id from team_member m"
        " join project p on p.team_id = m.team_id and p.id = %(project)s"
        " where m.team_id = %(team)s and m.user_id = any(%(users)s::uuid[])"
        " and ((p.visibility = 'team' and m.role <> 'guest') or exists ("
        " select 1 from project_member pm where pm.team_id = m.team_id"
        " and pm.project_id = p.id and pm.user_id = m.user_id))"
        " on conflict do nothing returning user_id",
        {"task": task_id, "project": project_id, "team": tx.team_id, "users": user_ids},
    )
    return [row["user_id"] for row in rows]


async def remove_assignees(tx: Tx, task_id: UUID, user_ids: list[UUID]) -> None:
    await tx.execute(
        "delete from task_assignee where team_id = %s and task_id = %s"
        " and user_id = any(%s::uuid[])",
        (tx.team_id, task_id, user_ids),
    )


async def add_labels(tx: Tx, project_id: UUID, task_id: UUID, label_ids: list[UUID]) -> list[UUID]:
    """Attach labels of the task's project; returns those attached."""
    rows = await tx.fetch_all(
        "insert into task_label (project_id, task_id, label_id)"
        " select l.project_id, %s, l.id from label l"
        " where l.team_id = %s and l.project_id = %s and l.id = any(%s::uuid[])"
        " on conflict do nothing returning label_id",
        (task_id, tx.team_id, project_id, label_ids),
    )
    return [row["label_id"] for row in rows]


async def remove_labels(tx: Tx, task_id: UUID, label_ids: list[UUID]) -> None:
    await tx.execute(
        "delete from task_label where team_id = %s and task_id = %s and label_id = any(%s::uuid[])",
        (tx.team_id, task_id, label_ids),
    )


async def check_parent(
    tx: Tx, project_id: UUID, task_id: UUID | None, parent_id: UUID
) -> dict[str, Any]:
    """``live``: the parent is a live task of the project; ``cycle``: ``task_id`` is the
    parent or one of its ancestors (the parent would become its own descendant)."""
    row = await tx.fetch_one(
        "with recursive up (id, parent_id) as ("
        " select id, parent_id from task"
        " where team_id = %(team)s and project_id = %(project)s and id = %(parent)s"
        " union"
        " select t.id, t.parent_id from task t join up on t.team_id = %(team)s"
        " and t.project_id = %(project)s and t.id = up.parent_id)"
        " select exists (select 1 from task where team_id = %(team)s"
        " and project_id = %(project)s and id = %(parent)s and deleted_at is null) as live,"
        " exists (select 1 from up where id = %(task)s) as cycle",
        {"team": tx.team_id, "project": project_id, "parent": parent_id, "task": task_id},
    )
    assert row is not None
    return row


async def soft_delete_tree(tx: Tx, project_id: UUID, task_id: UUID) -> list[UUID]:
    """Soft-delete the task and its live descendants with one ``deleted_at`` stamp (the
    transaction time); returns the ids deleted, the task first (empty: not found)."""
    rows = await tx.fetch_all(
        "with recursive tree (id) as ("
        " select id from task where team_id = %(team)s and project_id = %(project)s"
        " and id = %(task)s and deleted_at is null"
        " union"
        " select c.id from task c join tree on c.team_id = %(team)s"
        " and c.project_id = %(project)s and c.parent_id = tree.id and c.deleted_at is null)"
        " update task set deleted_at = now(), version = version + 1"
        " where team_id = %(team)s and id in (select id from tree)"
        " returning id, id = %(task)s as root",
        {"team": tx.team_id, "project": project_id, "task": task_id},
    )
    return [row["id"] for row in sorted(rows, key=lambda row: not row["root"])]


async def deleted_task(
    tx: Tx, project_id: UUID, task_id: UUID, retention_days: int
) -> dict[str, Any] | None:
    """A soft-deleted task with ``parent_live`` (False when its parent is deleted too);
    None once deleted more than ``retention_days`` ago (0: kept for good), when the trash
    purge may take it."""
    return await tx.fetch_one(
        "select t.id, t.deleted_at, t.parent_id,"
        " t.parent_id is null or exists (select 1 from task q where q.team_id = t.team_id"
        " and q.project_id = t.project_id and q.id = t.parent_id and q.deleted_at is null)"
        " as parent_live"
        " from task t join project p on p.team_id = t.team_id and p.id = t.project_id"
        " and p.deleted_at is null"
        " where t.team_id = %(team)s and t.project_id = %(project)s and t.id = %(task)s"
        " and t.deleted_at is not null and (%(days)s = 0"
        " or t.deleted_at >= now() - make_interval(days => %(days)s))"
        " for update of t",
        {"team": tx.team_id, "project": project_id, "task": task_id, "days": retention_days},
    )


async def restore_tree(tx: Tx, project_id: UUID, task_id: UUID, deleted_at: datetime) -> list[UUID]:
    """Restore the task and the descendants deleted with it (same stamp); returns their
    ids, the task first. Subtasks deleted on their own before stay deleted."""
    rows = await tx.fetch_all(
        "with recursive tree (id) as ("
        " select id from task where team_id = %(team)s and project_id = %(project)s"
        " and id = %(task)s and deleted_at = %(stamp)s"
        " union"
        " select c.id from task c join tree on c.team_id = %(team)s"
        " and c.project_id = %(project)s and c.parent_id = tree.id"
        " and c.deleted_at = %(stamp)s)"
        " update task set deleted_at = null, version = version + 1"
        " where team_id = %(team)s and id in (select id from tree)"
        " returning id, id = %(task)s as root",
        {"team": tx.team_id, "project": project_id, "task": task_id, "stamp": deleted_at},
    )
    return [row["id"] for row in sorted(rows, key=lambda row: not row["root"])]


async def reassign_status(
    tx: Tx, project_id: UUID, source: UUID, target: UUID, step: int
) -> list[dict[str, Any]]:
    """Move every task of ``source`` (deleted ones too: the foreign key) to the end of
    ``target`` in their order, with ``completed_at`` following the target's category; each
    moved task's id and new position."""
    return await tx.fetch_all(
        "with moved as ("
        " select id, row_number() over (order by position, id) as rank from task"
        " where team_id = %(team)s and status_id = %(source)s),"
        " base as (select coalesce(max(position), 0) as position from task"
        " where team_id = %(team)s and status_id = %(target)s and deleted_at is null),"
        " target as (select category from status where project_id = %(project)s"
        " and id = %(target)s)"
        " update task t set status_id = %(target)s,"
        " position = base.position + moved.rank * %(step)s,"
        " completed_at = case when target.category = 'completed'"
        " then coalesce(t.completed_at, now()) end,"
        " version = t.version + 1"
        " from moved, base, target where t.team_id = %(team)s and t.id = moved.id"
        " returning t.id, t.position",
        {
            "team": tx.team_id,
            "project": project_id,
            "source": source,
            "target": target,
            "step": step,
        },
    )


async def touch_labelled_tasks(tx: Tx, project_id: UUID, label_id: UUID) -> int:
    """Bump the version of the tasks carrying a label about to be deleted (their label set
    changes); returns how many."""
    rows = await tx.fetch_all(
        "update task t set version = t.version + 1 from task_label tl"
        " where tl.team_id = %(team)s and tl.project_id = %(project)s"
        " and tl.label_id = %(label)s"
        " and t.team_id = tl.team_id and t.project_id = tl.project_id and t.id = tl.task_id"
        " returning t.id",
        {"team": tx.team_id, "project": project_id, "label": label_id},
    )
    return len(rows)

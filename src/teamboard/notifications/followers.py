"""SQL for task followers (the users told about new comments on a task)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from teamboard.db import Tx
from teamboard.kit.pagination import limit_clause
from teamboard.tasks.refs import TaskRef

_SELECT = (
    "select f.user_id, u.display_name, f.created_at as followed_at"
    " from task_follower f left join app_user u on u.id = f.user_id"
    " where f.task_id = %(task)s and f.project_id = %(project)s"
)


async def follow(tx: Tx, task: TaskRef, user_id: UUID) -> bool:
    """Make the user follow the task; False when they already did."""
    row = await tx.fetch_one(
        "insert into task_follower (task_id, project_id, user_id) values (%s, %s, %s)"
        " on conflict do nothing returning user_id",
        (task.id, task.project_id, user_id),
    )
    return row is not None


async def unfollow(tx: Tx, task: TaskRef, user_id: UUID) -> bool:
    row = await tx.fetch_one(
        "delete from task_follower where task_id = %s and project_id = %s and user_id = %s"
        " returning user_id",
        (task.id, task.project_id, user_id),
    )
    return row is not None


async def get_follower(tx: Tx, task: TaskRef, user_id: UUID) -> dict[str, Any] | None:
    return await tx.fetch_one(
        _SELECT + " and f.user_id = %(user)s",
        {"task": task.id, "project": task.project_id, "user": user_id},
    )


async def list_followers(
    tx: Tx, task: TaskRef, limit: int, after: UUID | None
) -> list[dict[str, Any]]:
    params = {"task": task.id, "project": task.project_id, "after": after}
    keyset = "" if after is None else " and f.user_id > %(after)s"
    order = f" order by f.user_id {limit_clause(limit + 1)}"
    return await tx.fetch_all(_SELECT + keyset + order, params)

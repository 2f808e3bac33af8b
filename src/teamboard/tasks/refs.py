"""The task that nested resources hang from (comments, followers, activity).

A task is addressable when the caller can see it (RLS: its project is visible) and neither
it nor its project is deleted; otherwise it answers 404, exactly like a missing id.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from teamboard.db import Tx
from teamboard.errors import NotFound


@dataclass(frozen=True)
class TaskRef:
    id: UUID
    project_id: UUID


async def require_task(tx: Tx, task_id: UUID) -> TaskRef:
    row = await tx.fetch_one(
        "select t.id, t.project_id from task t"
        " join project p on p.id = t.project_id and p.deleted_at is null"
        " where t.id = %s and t.deleted_at is null",
        (task_id,),
    )
    if row is None:
        raise NotFound()
    return TaskRef(row["id"], row["project_id"])

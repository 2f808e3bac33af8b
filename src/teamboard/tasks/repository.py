"""SQL for tasks (the minimal table of the foundation; the full API builds on it)."""

from __future__ import annotations

from uuid import UUID

from teamboard.db import Tx
from teamboard.kit.ids import new_id


async def next_number(tx: Tx, project_id: UUID) -> int:
    """Allocate the project's next task number (``ENG-42``).

    The project row lock serializes concurrent creations, and a rolled-back transaction
    gives its number back, so numbers have neither gaps nor duplicates.
    """
    number = await tx.fetch_value(
        "update project set next_task_number = next_task_number + 1"
        " where id = %s and deleted_at is null returning next_task_number - 1",
        (project_id,),
    )
    if number is None:
        raise LookupError("project not found")
    return int(number)


async def insert_task(
    tx: Tx,
    *,
    project_id: UUID,
    title: str,
    description: str,
    status_id: UUID,
    priority: int,
    created_by: UUID,
) -> UUID:
    task_id = new_id()
    number = await next_number(tx, project_id)
    await tx.execute(
        "insert into task (id, project_id, number, title, description, status_id, priority,"
        " created_by, completed_at)"
        " select %s, %s, %s, %s, %s, s.id, %s, %s,"
        " case when s.category = 'completed' then now() end"
        " from status s where s.id = %s and s.project_id = %s",
        (
            task_id,
            project_id,
            number,
            title,
            description,
            priority,
            created_by,
            status_id,
            project_id,
        ),
    )
    return task_id


async def project_statuses(tx: Tx, project_id: UUID) -> list[UUID]:
    rows = await tx.fetch_all(
        "select id from status where project_id = %s order by position", (project_id,)
    )
    return [row["id"] for row in rows]

"""Lookups that features attached to a task (attachments, time entries) scope their rows with.

Row Level Security does the visibility: a task of another team, of a private project the
caller is not in, or soft-deleted, is simply not found.
"""

from __future__ import annotations

from uuid import UUID

from teamboard.db import Tx


async def live_task_project(tx: Tx, task_id: UUID) -> UUID | None:
    """The project of a live task the caller can see, or None."""
    project_id: UUID | None = await tx.fetch_value(
        "select project_id from task where id = %s and deleted_at is null", (task_id,)
    )
    return project_id

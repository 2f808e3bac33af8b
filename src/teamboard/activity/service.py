"""The activity of a task, read from the event log (events whose subject is the task:
its own changes, its comments, follows)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from teamboard.activity import repository
from teamboard.deps import TeamContext
from teamboard.kit.keyset import as_datetime, as_uuid, typed_key
from teamboard.kit.pagination import CursorCodec
from teamboard.tasks.refs import require_task


async def task_activity(
    ctx: TeamContext, cursors: CursorCodec, task_id: UUID, limit: int, cursor: str | None
) -> dict[str, Any]:
    await ctx.require("guest")
    task = await require_task(ctx.tx, task_id)
    scope = f"activity:{ctx.team_id}:{task.id}"
    after = typed_key(cursors.page(scope, {}, limit, cursor).after, (as_datetime, as_uuid))
    rows = await repository.task_activity(
        ctx.tx, task.id, limit, None if after is None else (after[0], after[1])
    )
    return cursors.envelope(scope, {}, rows, limit, ["occurred_at", "id"])

"""Tasks for the tests of features attached to tasks, made through the tasks service as the
acting user (app role, RLS on, the same rules and event as ``POST …/tasks``) without an HTTP
client."""

from __future__ import annotations

import uuid
from typing import Any

from teamboard.deps import TeamContext
from teamboard.tasks import service
from teamboard.tasks.schemas import TaskIn


async def create_task(
    app: Any,
    actor_id: uuid.UUID,
    team_id: uuid.UUID,
    project_id: uuid.UUID | str,
    title: str,
    description: str = "",
) -> uuid.UUID:
    """A task in the project's default status, created by ``actor_id`` and committed."""
    project = uuid.UUID(str(project_id))
    async with app.state.services.db.transaction(user_id=actor_id, team_id=team_id) as tx:
        ctx = TeamContext(tx, team_id, actor_id, None)
        task = await service.create_task(ctx, project, TaskIn(title=title, description=description))
    return uuid.UUID(str(task.id))  # the driver's UUID is a subclass

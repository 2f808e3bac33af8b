"""Tasks for the tests of features attached to tasks, made through the task repository as
the acting user (app role, RLS on), while the task REST API lives on another branch."""

from __future__ import annotations

import uuid
from typing import Any

from teamboard.tasks import repository


async def create_task(
    app: Any, actor_id: uuid.UUID, team_id: uuid.UUID, project_id: uuid.UUID | str, title: str
) -> uuid.UUID:
    """A task in the project's first status, created by ``actor_id`` and committed."""
    project = uuid.UUID(str(project_id))
    async with app.state.services.db.transaction(user_id=actor_id, team_id=team_id) as tx:
        statuses = await repository.project_statuses(tx, project)
        return await repository.insert_task(
            tx,
            project_id=project,
            title=title,
            description="",
            status_id=statuses[0],
            priority=0,
            created_by=actor_id,
        )

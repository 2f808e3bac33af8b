"""SQL for the statuses of a project (its workflow)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from teamboard.db import Tx
from teamboard.kit.pagination import limit_clause

_COLUMNS = "id, project_id, name, category, position, created_at, updated_at, version"

#: Gap between consecutive status positions (a reorder rewrites them all: statuses are few).
STATUS_STEP = 1000


async def list_statuses(
    tx: Tx, project_id: UUID, limit: int, after: tuple[int, UUID] | None
) -> list[dict[str, Any]]:
    """Statuses in workflow order, keyset-paginated on ``(position, id)``."""
    if after is None:
        return await tx.fetch_all(
            f"select {_COLUMNS} from status where project_id = %s order by position, id"
            f" {limit_clause(limit + 1)}",
            (project_id,),
        )
    return await tx.fetch_all(
        f"select {_COLUMNS} from status where project_id = %s and (position, id) > (%s, %s)"
        f" order by position, id {limit_clause(limit + 1)}",
        (project_id, after[0], after[1]),
    )


async def get_status(tx: Tx, project_id: UUID, status_id: UUID) -> dict[str, Any] | None:
    return await tx.fetch_one(
        f"select {_COLUMNS} from status where project_id = %s and id = %s",
        (project_id, status_id),
    )


async def insert_status(
    tx: Tx, status_id: UUID, project_id: UUID, name: str, category: str
) -> dict[str, Any] | None:
    """Append a status at the end of the workflow."""
    return await tx.fetch_one(
        f"insert into status (id, project_id, name, category, position)"
        f" select %(id)s, %(project)s, %(name)s, %(category)s,"
        f" coalesce(max(position), 0) + {STATUS_STEP}"
        f" from status where project_id = %(project)s returning {_COLUMNS}",
        {"id": status_id, "project": project_id, "name": name, "category": category},
    )


async def rename_status(
    tx: Tx, project_id: UUID, status_id: UUID, name: str
) -> dict[str, Any] | None:
    return await tx.fetch_one(
        f"update status set name = %s where project_id = %s and id = %s returning {_COLUMNS}",
        (name, project_id, status_id),
    )


async def status_ids(tx: Tx, project_id: UUID) -> list[UUID]:
    rows = await tx.fetch_all(
        "select id from status where project_id = %s order by position, id", (project_id,)
    )
    return [row["id"] for row in rows]


async def reorder(tx: Tx, project_id: UUID, ordered: list[UUID]) -> None:
    """Rewrite the positions in the given order (every status of the project, once)."""
    await tx.execute(
        f"update status s set position = o.ordinality * {STATUS_STEP}"
        " from unnest(%s::uuid[]) with ordinality as o(id, ordinality)"
        " where s.project_id = %s and s.id = o.id",
        (ordered, project_id),
    )


async def delete_status(tx: Tx, project_id: UUID, status_id: UUID) -> bool:
    row = await tx.fetch_one(
        "delete from status where project_id = %s and id = %s returning id",
        (project_id, status_id),
    )
    return row is not None

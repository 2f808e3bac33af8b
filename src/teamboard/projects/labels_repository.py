"""SQL for the labels of a project."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from teamboard.db import Tx
from teamboard.kit.pagination import limit_clause

_COLUMNS = "id, project_id, name, color, created_at, updated_at, version"


async def list_labels(
    tx: Tx, project_id: UUID, limit: int, after: tuple[str, UUID] | None
) -> list[dict[str, Any]]:
    """Labels by name, keyset-paginated on ``(name, id)``."""
    if after is None:
        return await tx.fetch_all(
            f"select {_COLUMNS} from label where project_id = %s order by name, id"
            f" {limit_clause(limit + 1)}",
            (project_id,),
        )
    return await tx.fetch_all(
        f"select {_COLUMNS} from label where project_id = %s"
        f" and (name, id) > (%s, %s) order by name, id {limit_clause(limit + 1)}",
        (project_id, after[0], after[1]),
    )


async def insert_label(
    tx: Tx, label_id: UUID, project_id: UUID, name: str, color: str
) -> dict[str, Any] | None:
    return await tx.fetch_one(
        f"insert into label (id, project_id, name, color) values (%s, %s, %s, %s)"
        f" returning {_COLUMNS}",
        (label_id, project_id, name, color),
    )


async def get_label(tx: Tx, project_id: UUID, label_id: UUID) -> dict[str, Any] | None:
    return await tx.fetch_one(
        f"select {_COLUMNS} from label where project_id = %s and id = %s",
        (project_id, label_id),
    )


async def update_label(
    tx: Tx, project_id: UUID, label_id: UUID, name: str, color: str
) -> dict[str, Any] | None:
    return await tx.fetch_one(
        f"update label set name = %s, color = %s where project_id = %s and id = %s"
        f" returning {_COLUMNS}",
        (name, color, project_id, label_id),
    )


async def delete_label(tx: Tx, project_id: UUID, label_id: UUID) -> bool:
    """Delete the label; its links to tasks go with it (foreign key cascade)."""
    row = await tx.fetch_one(
        "delete from label where project_id = %s and id = %s returning id",
        (project_id, label_id),
    )
    return row is not None

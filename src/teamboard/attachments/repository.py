"""SQL for attachment metadata and the queue of stored objects to remove."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from teamboard.db import Tx
from teamboard.kit.pagination import id_page_sql

_COLUMNS = (
    "a.id, a.task_id, a.project_id, a.filename, a.content_type, a.size_bytes, a.sha256,"
    " a.uploaded_by, a.created_at"
)


async def insert_attachment(tx: Tx, values: dict[str, Any]) -> dict[str, Any] | None:
    """Record an attachment on a live task the caller can see; None when there is none."""
    return await tx.fetch_one(
        "insert into attachment as a (id, project_id, task_id, filename, content_type,"
        " size_bytes, sha256, storage_key, uploaded_by)"
        " select %(id)s, t.project_id, t.id, %(filename)s, %(content_type)s, %(size_bytes)s,"
        " %(sha256)s, %(storage_key)s, %(uploaded_by)s"
        " from task t where t.id = %(task_id)s and t.deleted_at is null"
        f" returning {_COLUMNS}",
        values,
    )


async def get_attachment(tx: Tx, attachment_id: UUID) -> dict[str, Any] | None:
    """An attachment of a live task, with its storage key (never sent to clients)."""
    return await tx.fetch_one(
        f"select {_COLUMNS}, a.storage_key from attachment a"
        " join task t on t.team_id = a.team_id and t.id = a.task_id and t.deleted_at is null"
        " where a.id = %s",
        (attachment_id,),
    )


async def list_attachments(
    tx: Tx, task_id: UUID, project_id: UUID, limit: int, after: UUID | None
) -> list[dict[str, Any]]:
    """One page of a task's attachments in upload order (ids are time-ordered)."""
    sql, params = id_page_sql(
        f"select {_COLUMNS} from attachment a",
        ["a.task_id = %(task)s", "a.project_id = %(project)s"],
        "a.id",
        after,
        limit,
        {"task": task_id, "project": project_id},
    )
    return await tx.fetch_all(sql, params)


async def delete_attachment(tx: Tx, attachment_id: UUID) -> bool:
    """Delete the row; its trigger queues the stored object for removal after commit."""
    row = await tx.fetch_one("delete from attachment where id = %s returning id", (attachment_id,))
    return row is not None


async def take_purges(tx: Tx, limit: int) -> list[str]:
    """Remove up to ``limit`` queued objects from the queue and return their keys.

    Rows locked by a concurrent cleanup are skipped. The caller removes the objects in the
    same transaction: if that fails, the rollback puts the rows back for the next run.
    """
    rows = await tx.fetch_all(
        "delete from attachment_purge where (team_id, id) in ("
        " select team_id, id from attachment_purge order by created_at limit %s"
        " for update skip locked) returning storage_key",
        (limit,),
    )
    return [row["storage_key"] for row in rows]


async def any_queued(tx: Tx) -> bool:
    """Whether the queue holds a key that ``tx``'s role can see (the owner: any)."""
    return bool(await tx.fetch_value("select exists (select 1 from attachment_purge)"))


async def take_any_purges(tx: Tx, limit: int) -> list[str]:
    """:func:`take_purges` over every team, for the worker, which has no privilege on the
    queue: through the owner's ``tb_take_attachment_purges`` (same rules)."""
    rows = await tx.fetch_all("select key from tb_take_attachment_purges(%s) key", (limit,))
    return [row["key"] for row in rows]

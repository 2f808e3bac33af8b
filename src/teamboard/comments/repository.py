"""SQL for comments. Row Level Security limits every statement to visible projects; the
``project_id`` predicates are there for the indexes (it is part of the task key)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from teamboard.comments.mentions import MentionNames
from teamboard.db import Tx
from teamboard.kit.pagination import limit_clause
from teamboard.tasks.refs import TaskRef

# Author and mentioned users with their names, in the same statement as the comments.
_SELECT = (
    "select c.id, c.task_id, c.body, c.created_at, c.updated_at, c.edited_at, c.version,"
    " json_build_object('id', c.author_id, 'display_name', a.display_name) as author,"
    " coalesce((select json_agg(json_build_object('id', m.id, 'display_name', u.display_name)"
    "   order by u.display_name, m.id)"
    "   from unnest(c.mentions) m(id) left join app_user u on u.id = m.id), '[]') as mentions"
    " from comment c left join app_user a on a.id = c.author_id"
    " where c.task_id = %(task)s and c.project_id = %(project)s and c.deleted_at is null"
)


async def list_comments(
    tx: Tx, task: TaskRef, limit: int, after: UUID | None
) -> list[dict[str, Any]]:
    """Oldest first (ids are UUIDv7, so id order is creation order)."""
    params = {"task": task.id, "project": task.project_id, "after": after}
    keyset = "" if after is None else " and c.id > %(after)s"
    order = f" order by c.id {limit_clause(limit + 1)}"
    return await tx.fetch_all(_SELECT + keyset + order, params)


async def get_comment(tx: Tx, task: TaskRef, comment_id: UUID) -> dict[str, Any] | None:
    params = {"task": task.id, "project": task.project_id, "id": comment_id}
    return await tx.fetch_one(_SELECT + " and c.id = %(id)s", params)


async def find_comment(tx: Tx, task: TaskRef, comment_id: UUID) -> dict[str, Any] | None:
    """The author and mentions of a live comment of the task (what the rules need)."""
    return await tx.fetch_one(
        "select author_id, mentions, version from comment where id = %s and task_id = %s"
        " and project_id = %s and deleted_at is null",
        (comment_id, task.id, task.project_id),
    )


async def resolve_mentions(tx: Tx, project_id: UUID, names: MentionNames) -> list[UUID]:
    """Members named by ``names`` who can see the project (see ``comments.mentions``)."""
    rows = await tx.fetch_all(
        "with candidate as ("
        "  select m.user_id, u.email, split_part(u.email, '@', 1) as local_part,"
        "   count(*) over (partition by split_part(u.email, '@', 1)) as same_local"
        "  from team_member m join app_user u on u.id = m.user_id"
        "  where m.team_id = tb_current_team_id()"
        "   and (u.email = any(%(emails)s::text[])"
        "    or split_part(u.email, '@', 1) = any(%(locals)s::text[])))"
        " select user_id from candidate"
        " where (email = any(%(emails)s::text[])"
        "  or (local_part = any(%(locals)s::text[]) and same_local = 1))"
        " and tb_member_sees_project(user_id, %(project)s)",
        {"emails": names.emails, "locals": names.local_parts, "project": project_id},
    )
    return [row["user_id"] for row in rows]


async def insert_comment(
    tx: Tx, comment_id: UUID, task: TaskRef, author: UUID, body: str, mentions: list[UUID]
) -> None:
    await tx.execute(
        "insert into comment (id, task_id, project_id, author_id, body, mentions)"
        " values (%s, %s, %s, %s, %s, %s::uuid[])",
        (comment_id, task.id, task.project_id, author, body, mentions),
    )


async def edit_comment(
    tx: Tx, comment_id: UUID, body: str, mentions: list[UUID], version: int | None
) -> bool:
    """Replace the body; only of ``version`` when given (False when it is gone)."""
    row = await tx.fetch_one(
        "update comment set body = %(body)s, mentions = %(mentions)s::uuid[], edited_at = now()"
        " where id = %(id)s and deleted_at is null"
        " and (%(version)s::integer is null or version = %(version)s) returning id",
        {"body": body, "mentions": mentions, "id": comment_id, "version": version},
    )
    return row is not None


async def soft_delete_comment(tx: Tx, comment_id: UUID) -> bool:
    """Erase the text and mark the comment deleted; the row stays for the references."""
    row = await tx.fetch_one(
        "update comment set body = '', mentions = '{}', deleted_at = now()"
        " where id = %s and deleted_at is null returning id",
        (comment_id,),
    )
    return row is not None

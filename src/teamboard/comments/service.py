"""Comment rules.

Anyone who can see a task (guests of its project included) comments on it, and then
follows it. Authors edit their comments (``edited_at`` records the last edit); authors
and team admins delete them. Deletion is soft: the row stays, because events and
notifications refer to it, but its text and mentions are erased at once, and it leaves
lists, search and activity.

Comment events have the task as subject (``payload.comment_id`` names the comment), so the
task's activity is one index range of the event log. Payloads carry no text: the comment
row is the only copy of it, which is what makes deletion real.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from teamboard.comments import repository
from teamboard.comments.mentions import parse_mentions
from teamboard.deps import TeamContext
from teamboard.errors import Forbidden, NotFound
from teamboard.events.repository import append
from teamboard.kit.etag import changed_meanwhile, check_if_match
from teamboard.kit.ids import new_id
from teamboard.kit.pagination import CursorCodec
from teamboard.notifications import service as notifications
from teamboard.tasks.refs import TaskRef, require_task


async def _mentions(ctx: TeamContext, task: TaskRef, body: str) -> list[UUID]:
    names = parse_mentions(body)
    if not names:
        return []
    return await repository.resolve_mentions(ctx.tx, task.project_id, names)


async def _get(ctx: TeamContext, task: TaskRef, comment_id: UUID) -> dict[str, Any]:
    comment = await repository.get_comment(ctx.tx, task, comment_id)
    if comment is None:
        raise NotFound()
    return comment


async def _find(ctx: TeamContext, task: TaskRef, comment_id: UUID) -> dict[str, Any]:
    comment = await repository.find_comment(ctx.tx, task, comment_id)
    if comment is None:
        raise NotFound()
    return comment


async def list_comments(
    ctx: TeamContext, cursors: CursorCodec, task_id: UUID, limit: int, cursor: str | None
) -> dict[str, Any]:
    await ctx.require("guest")
    task = await require_task(ctx.tx, task_id)
    return await cursors.id_page(
        f"comments:{ctx.team_id}:{task.id}",
        limit,
        cursor,
        lambda n, after: repository.list_comments(ctx.tx, task, n, after),
    )


async def get_comment(ctx: TeamContext, task_id: UUID, comment_id: UUID) -> dict[str, Any]:
    await ctx.require("guest")
    return await _get(ctx, await require_task(ctx.tx, task_id), comment_id)


async def create_comment(ctx: TeamContext, task_id: UUID, body: str) -> dict[str, Any]:
    await ctx.require("guest")
    task = await require_task(ctx.tx, task_id)
    mentioned = await _mentions(ctx, task, body)
    comment_id = new_id()
    await repository.insert_comment(ctx.tx, comment_id, task, ctx.user_id, body, mentioned)
    await notifications.follow(ctx.tx, task, ctx.user_id)
    await append(
        ctx.tx,
        "comment.created",
        subject_id=task.id,
        project_id=task.project_id,
        payload={"comment_id": comment_id, "mentions": mentioned},
    )
    return await _get(ctx, task, comment_id)


async def edit_comment(
    ctx: TeamContext, task_id: UUID, comment_id: UUID, body: str, if_match: str | None = None
) -> dict[str, Any]:
    """Replace the body (authors only); ``if_match`` (the ``If-Match`` header) must match
    the version. ``new_mentions`` in the event are the members the edit mentions for the
    first time (the notifications consumer tells them)."""
    await ctx.require("guest")
    task = await require_task(ctx.tx, task_id)
    current = await _find(ctx, task, comment_id)
    if current["author_id"] != ctx.user_id:
        raise Forbidden("Only its author can edit a comment", code="not_comment_author")
    version = check_if_match(if_match, current["version"])
    mentioned = await _mentions(ctx, task, body)
    if not await repository.edit_comment(ctx.tx, comment_id, body, mentioned, version):
        raise changed_meanwhile() if version is not None else NotFound()
    added = [user for user in mentioned if user not in current["mentions"]]
    await append(
        ctx.tx,
        "comment.edited",
        subject_id=task.id,
        project_id=task.project_id,
        payload={"comment_id": comment_id, "mentions": mentioned, "new_mentions": added},
    )
    return await _get(ctx, task, comment_id)


async def delete_comment(ctx: TeamContext, task_id: UUID, comment_id: UUID) -> None:
    """Soft-delete (authors, and admins for any comment)."""
    role = await ctx.require("guest")
    task = await require_task(ctx.tx, task_id)
    current = await _find(ctx, task, comment_id)
    by_author = current["author_id"] == ctx.user_id
    if not by_author:
        await ctx.require("admin")
    if not await repository.soft_delete_comment(ctx.tx, comment_id):
        raise NotFound()
    await append(
        ctx.tx,
        "comment.deleted",
        subject_id=task.id,
        project_id=task.project_id,
        payload={"comment_id": comment_id, "by": "author" if by_author else role},
    )

"""In-app notifications and task followers.

Notifications are per-recipient rows written in the transaction of the mutation that
causes them, from the acting user:

* ``assigned``: :func:`notify_assigned`, called by the tasks feature when assignees are
  added;
* ``mentioned``: members ``@mentioned`` in a new comment, or newly mentioned by an edit;
* ``commented``: followers of the task, for every new comment.

Nobody is notified of their own action, a user gets one notification per event (a mention
wins over "commented"), and only members who can see the task's project are notified.
Reading and changing read state are the recipient's private business: they append no event
(the event log is readable by the whole team).

The creator of a task follows it from its creation (a trigger, see the collab migration),
commenters when they first comment, anyone who can see a task by following it explicitly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from teamboard.db import Tx
from teamboard.deps import TeamContext
from teamboard.errors import NotFound
from teamboard.events.repository import append
from teamboard.kit.pagination import CursorCodec
from teamboard.notifications import followers, repository
from teamboard.tasks.refs import TaskRef, require_task


async def notify_assigned(tx: Tx, task_id: UUID, user_ids: Sequence[UUID]) -> list[UUID]:
    """Notify users just assigned to the task (call it with the added assignees only, in the
    transaction that adds them). Returns who was notified: the actor, non-members and
    members who cannot see the task are skipped."""
    return await _notify(tx, task_id, None, user_ids, "assigned", followers_kind=None)


async def notify_comment(
    tx: Tx, task: TaskRef, comment_id: UUID, mentioned: Sequence[UUID], *, new: bool
) -> list[UUID]:
    """Notify the ``mentioned`` users and, for a ``new`` comment, the task's followers."""
    return await _notify(
        tx, task.id, comment_id, mentioned, "mentioned", followers_kind="commented" if new else None
    )


async def _notify(
    tx: Tx,
    task_id: UUID,
    comment_id: UUID | None,
    direct: Sequence[UUID],
    direct_kind: str,
    *,
    followers_kind: str | None,
) -> list[UUID]:
    if not direct and followers_kind is None:
        return []
    rows = await repository.recipients(tx, task_id, direct, direct_kind, followers_kind)
    if rows:
        await repository.insert_notifications(tx, task_id, comment_id, rows)
    return [row["user_id"] for row in rows]


async def list_notifications(
    ctx: TeamContext, cursors: CursorCodec, limit: int, cursor: str | None, unread_only: bool
) -> dict[str, Any]:
    await ctx.require("guest")
    return await cursors.id_page(
        f"notifications:{ctx.team_id}:{ctx.user_id}",
        limit,
        cursor,
        lambda n, after: repository.list_notifications(ctx.tx, n, after, unread_only=unread_only),
        filters={"unread": unread_only},
    )


async def unread_count(ctx: TeamContext) -> int:
    await ctx.require("guest")
    return await repository.unread_count(ctx.tx)


async def set_read(ctx: TeamContext, notification_id: UUID, read: bool) -> dict[str, Any]:
    await ctx.require("guest")
    notification = await repository.set_read(ctx.tx, notification_id, read)
    if notification is None:
        raise NotFound()
    return notification


async def mark_all_read(ctx: TeamContext, up_to: UUID | None) -> int:
    await ctx.require("guest")
    return await repository.mark_all_read(ctx.tx, up_to)


async def follow(tx: Tx, task: TaskRef, user_id: UUID) -> bool:
    """Make ``user_id`` (the caller) follow the task; False when they already did."""
    return await followers.follow(tx, task, user_id)


async def follow_task(ctx: TeamContext, task_id: UUID) -> tuple[dict[str, Any], bool]:
    """Follow a visible task; returns the follower and whether it is new."""
    await ctx.require("guest")
    task = await require_task(ctx.tx, task_id)
    created = await followers.follow(ctx.tx, task, ctx.user_id)
    if created:
        await append(
            ctx.tx,
            "task.followed",
            subject_id=task.id,
            project_id=task.project_id,
            payload={"user_id": ctx.user_id},
        )
    follower = await followers.get_follower(ctx.tx, task, ctx.user_id)
    assert follower is not None
    return follower, created


async def unfollow_task(ctx: TeamContext, task_id: UUID) -> None:
    """Stop following a visible task (nothing to do when not following)."""
    await ctx.require("guest")
    task = await require_task(ctx.tx, task_id)
    if await followers.unfollow(ctx.tx, task, ctx.user_id):
        await append(
            ctx.tx,
            "task.unfollowed",
            subject_id=task.id,
            project_id=task.project_id,
            payload={"user_id": ctx.user_id},
        )


async def list_followers(
    ctx: TeamContext, cursors: CursorCodec, task_id: UUID, limit: int, cursor: str | None
) -> dict[str, Any]:
    await ctx.require("guest")
    task = await require_task(ctx.tx, task_id)
    return await cursors.id_page(
        f"followers:{ctx.team_id}:{task.id}",
        limit,
        cursor,
        lambda n, after: followers.list_followers(ctx.tx, task, n, after),
        key="user_id",
    )

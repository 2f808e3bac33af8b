"""In-app notifications and task followers.

Notifications are per-recipient rows produced from the event log by a consumer of
``teamboard worker`` (``teamboard.notifications.consumer``), not in the request path; each
event is handled in a transaction on the app role whose context is the event's actor and
team, so Row Level Security checks the notifications as if the actor wrote them:

* ``assigned``: ``task.assigned`` events (``payload.user_ids``: the assignees added);
* ``mentioned``: ``comment.created`` (``payload.mentions``) and ``comment.edited``
  (``payload.new_mentions``: the members the edit newly mentions);
* ``commented``: followers of the task, for every ``comment.created``.

Nobody is notified of their own action, a user gets one notification per event (a mention
wins over "commented"; a unique key on the event and recipient makes reprocessing an event
harmless), and only members who can see the task's project when the event is processed
are notified (nobody, once the task or the comment is deleted).
Reading and changing read state are the recipient's private business: they append no event
(the event log is readable by the whole team).

The creator of a task follows it from its creation (a trigger, see the collab migration),
commenters when they first comment, anyone who can see a task by following it explicitly.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from teamboard.db import Tx
from teamboard.deps import TeamContext
from teamboard.errors import NotFound
from teamboard.events.log import LoggedEvent
from teamboard.events.repository import append
from teamboard.kit.etag import changed_meanwhile, check_if_match
from teamboard.kit.pagination import CursorCodec
from teamboard.notifications import followers, repository
from teamboard.tasks.refs import TaskRef, require_task

#: The events that notify, and how: (direct recipients' payload key, their kind, whether
#: the task's followers are told too).
_RULES: dict[str, tuple[str, str, bool]] = {
    "task.assigned": ("user_ids", "assigned", False),
    "comment.created": ("mentions", "mentioned", True),
    "comment.edited": ("new_mentions", "mentioned", False),
}
KINDS = frozenset(_RULES)


async def notify_for_event(tx: Tx, event: LoggedEvent) -> list[UUID]:
    """Produce the notifications of one event (``tx``: the actor's context in the event's
    team); returns who was notified this time (nobody when it was processed before)."""
    rule = _RULES.get(event.kind)
    if rule is None or event.subject_id is None:
        return []
    key, direct_kind, followers = rule
    payload = event.payload
    comment_id = UUID(str(payload["comment_id"])) if event.kind.startswith("comment.") else None
    direct = [UUID(str(user)) for user in payload.get(key) or []]
    if not direct and not followers:
        return []
    rows = await repository.recipients(
        tx, event.subject_id, comment_id, direct, direct_kind, "commented" if followers else None
    )
    if rows:
        await repository.insert_notifications(tx, event.id, event.subject_id, comment_id, rows)
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


async def set_read(
    ctx: TeamContext, notification_id: UUID, read: bool, if_match: str | None = None
) -> dict[str, Any]:
    """``if_match`` (the ``If-Match`` header), when given, must match the version."""
    await ctx.require("guest")
    version = None
    if if_match is not None:
        current = await repository.version_of(ctx.tx, notification_id)
        if current is None:
            raise NotFound()
        version = check_if_match(if_match, current)
    notification = await repository.set_read(ctx.tx, notification_id, read, version)
    if notification is None:
        raise changed_meanwhile() if version is not None else NotFound()
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

"""SQL for notifications. Row Level Security shows a notification to its recipient only,
and only while they can see the task's project; the queries also hide notifications of
deleted tasks and projects, so a notification never reveals a task the reader cannot open."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from teamboard.db import Tx
from teamboard.kit.ids import new_id
from teamboard.kit.pagination import id_page_sql

#: Notifications of ``{source}`` (the table, or the rows an update returned) with their task
#: and actor, in one statement.
_SELECT = (
    "select n.id, n.kind, n.read_at, n.created_at, n.comment_id, n.version,"
    " json_build_object('id', t.id, 'project_id', t.project_id,"
    "  'ref', p.key || '-' || t.number, 'title', t.title) as task,"
    " json_build_object('id', n.actor_id, 'display_name', a.display_name) as actor"
    " from {source} n"
    " join task t on t.id = n.task_id and t.deleted_at is null"
    " join project p on p.id = t.project_id and p.deleted_at is null"
    " left join app_user a on a.id = n.actor_id"
)
_LIVE_TASK = (
    "exists (select 1 from task t join project p on p.id = t.project_id"
    " and p.deleted_at is null where t.id = n.task_id and t.deleted_at is null)"
)


async def recipients(
    tx: Tx,
    task_id: UUID,
    comment_id: UUID | None,
    direct: Sequence[UUID],
    direct_kind: str,
    followers_kind: str | None,
) -> list[dict[str, Any]]:
    """Who to notify about the task: ``direct`` users (with ``direct_kind``) and, when
    ``followers_kind`` is given, its followers; one kind per user (direct first), never the
    actor (the context user), only members who can see the task. Empty when the task, or
    the comment when one is given, is deleted or not visible."""
    return await tx.fetch_all(
        "select distinct on (r.user_id) r.user_id, r.kind, t.project_id"
        " from task t cross join lateral ("
        "  select d.user_id, %(direct_kind)s::text as kind, 0 as precedence"
        "  from unnest(%(direct)s::uuid[]) d(user_id)"
        "  union all"
        "  select f.user_id, %(followers_kind)s::text, 1 from task_follower f"
        "  where %(followers_kind)s::text is not null"
        "   and f.task_id = t.id and f.project_id = t.project_id"
        " ) r"
        " where t.id = %(task)s and t.deleted_at is null and r.user_id <> %(actor)s"
        " and (%(comment)s::uuid is null or exists (select 1 from comment c"
        "  where c.id = %(comment)s and c.task_id = t.id and c.deleted_at is null))"
        " and tb_member_sees_project(r.user_id, t.project_id)"
        " order by r.user_id, r.precedence",
        {
            "task": task_id,
            "comment": comment_id,
            "direct": list(direct),
            "direct_kind": direct_kind,
            "followers_kind": followers_kind,
            "actor": tx.user_id,
        },
    )


async def insert_notifications(
    tx: Tx,
    event_id: UUID,
    task_id: UUID,
    comment_id: UUID | None,
    rows: Sequence[dict[str, Any]],
) -> None:
    """One notification per row of :func:`recipients`, from the context user, for the
    event; a recipient already notified of this event is skipped (reprocessing), by the
    unique key on (event, recipient). The conflict has no target on purpose: naming one
    needs SELECT on the rows, and the reader policy would then refuse every notification
    that is not for the actor."""
    await tx.execute(
        "insert into notification"
        " (id, event_id, recipient_id, kind, task_id, project_id, comment_id, actor_id)"
        " select r.id, %s::uuid, r.recipient_id, r.kind, %s::uuid, r.project_id, %s::uuid,"
        " %s::uuid"
        " from unnest(%s::uuid[], %s::uuid[], %s::text[], %s::uuid[])"
        " r(id, recipient_id, kind, project_id)"
        " on conflict do nothing",
        (
            event_id,
            task_id,
            comment_id,
            tx.user_id,
            [new_id() for _ in rows],
            [row["user_id"] for row in rows],
            [row["kind"] for row in rows],
            [row["project_id"] for row in rows],
        ),
    )


async def list_notifications(
    tx: Tx, limit: int, after: UUID | None, *, unread_only: bool
) -> list[dict[str, Any]]:
    """The caller's notifications, newest first (ids are UUIDv7)."""
    mine = ["n.recipient_id = %(me)s"] + (["n.read_at is null"] if unread_only else [])
    sql, params = id_page_sql(
        _SELECT.format(source="notification"),
        mine,
        "n.id",
        after,
        limit,
        {"me": tx.user_id},
        descending=True,
    )
    return await tx.fetch_all(sql, params)


async def unread_count(tx: Tx) -> int:
    count = await tx.fetch_value(
        "select count(*) from notification n where n.recipient_id = %s and n.read_at is null"
        f" and {_LIVE_TASK}",
        (tx.user_id,),
    )
    return int(count)


async def version_of(tx: Tx, notification_id: UUID) -> int | None:
    """The version of one of the caller's notifications (None: not theirs, or gone)."""
    version: int | None = await tx.fetch_value(
        "select n.version from notification n where n.id = %(id)s and n.recipient_id = %(me)s"
        f" and {_LIVE_TASK}",
        {"id": notification_id, "me": tx.user_id},
    )
    return version


async def set_read(
    tx: Tx, notification_id: UUID, read: bool, version: int | None = None
) -> dict[str, Any] | None:
    """Mark one of the caller's notifications read (keeping the first read time) or
    unread; of ``version`` only when given (None when it is not, or not found)."""
    return await tx.fetch_one(
        "with n as ("
        " update notification n"
        " set read_at = case when %(read)s then coalesce(n.read_at, now()) end"
        f" where n.id = %(id)s and n.recipient_id = %(me)s and {_LIVE_TASK}"
        " and (%(version)s::integer is null or n.version = %(version)s)"
        " returning n.*) " + _SELECT.format(source="n"),
        {"read": read, "id": notification_id, "me": tx.user_id, "version": version},
    )


async def mark_all_read(tx: Tx, up_to: UUID | None) -> int:
    """Mark the caller's unread notifications read, up to ``up_to`` (included) when given:
    a client passes the newest id it has shown, so later arrivals stay unread."""
    count = await tx.fetch_value(
        "with marked as ("
        " update notification set read_at = now()"
        " where recipient_id = %(me)s and read_at is null"
        " and (%(up_to)s::uuid is null or id <= %(up_to)s) returning 1)"
        " select count(*) from marked",
        {"me": tx.user_id, "up_to": up_to},
    )
    return int(count)

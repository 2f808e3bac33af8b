"""SQL for a task's activity: its events, newest first.

The event index ``(team_id, subject_id, occurred_at, id)`` (collab migration) makes this an
ordered index scan per monthly partition, merged; the keyset condition is a row comparison
in index order. RLS shows only events of projects the caller sees.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from teamboard.db import Tx
from teamboard.kit.pagination import limit_clause

# Comment events show the comment's current text (null once deleted). The CASE keeps the
# cast of payload.comment_id to comment events, whose payload this code writes. The
# actor's name is a subquery of the select list, so it is looked up for the events the
# limit lets through and nothing else: as a join (even a lateral one, which PostgreSQL
# flattens into a join), a generic plan that expects a task to have few events could hash
# every user instead (seen with the test suite's many users, ``db explain``).
#: An event's actor and comment (columns over ``event e``); GraphQL's activity shows the same.
ACTOR_AND_COMMENT = (
    " case when e.actor_id is not null then json_build_object('id', e.actor_id,"
    "  'display_name', (select u.display_name from app_user u where u.id = e.actor_id))"
    " end as actor,"
    " (select json_build_object('id', c.id, 'body', c.body, 'edited_at', c.edited_at)"
    "  from comment c where c.deleted_at is null and c.id = case"
    "   when e.kind like 'comment.%%' then (e.payload ->> 'comment_id')::uuid end) as comment"
)
_SELECT = (
    "select e.id, e.kind, e.occurred_at, e.payload,"
    + ACTOR_AND_COMMENT
    + " from event e where e.subject_id = %(task)s"
)


def activity_sql(*, after: bool, rows: int) -> str:
    """The statement of a first page, or of a page after ``(%(at)s, %(id)s)``, of ``rows``
    rows at most (public so that the plan can be checked)."""
    keyset = " and (e.occurred_at, e.id) < (%(at)s, %(id)s)" if after else ""
    return _SELECT + keyset + f" order by e.occurred_at desc, e.id desc {limit_clause(rows)}"


async def task_activity(
    tx: Tx, task_id: UUID, limit: int, after: tuple[datetime, UUID] | None
) -> list[dict[str, Any]]:
    params: dict[str, Any] = {"task": task_id}
    if after is not None:
        params["at"], params["id"] = after
    return await tx.fetch_all(activity_sql(after=after is not None, rows=limit + 1), params)

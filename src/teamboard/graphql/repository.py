"""SQL of GraphQL's lookups by id: one statement for every id a level of a query needs.

Every statement runs under the caller's team context (Row Level Security decides what is
found); ``team_id`` is also named so that each lookup is an index scan on ``(team_id, id)``.
A row that is missing, deleted, or not visible is simply absent: the field answers null.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from teamboard.db import Tx
from teamboard.graphql.lists import (
    PROJECT_COLUMNS,
    STATUS_COLUMNS,
    TASK_COLUMNS,
    TASK_DECORATION,
    TEAM_COLUMNS,
    convert_task,
)
from teamboard.graphql.pagination import Row

_LIVE_PROJECT = (
    " join project lp on lp.team_id = t.team_id and lp.id = t.project_id and lp.deleted_at is null"
)


def _by_id(rows: list[Row], key: str = "id") -> dict[Any, Row]:
    return {row[key]: row for row in rows}


async def team(tx: Tx, user_id: UUID, team_id: UUID) -> Row | None:
    """The team with the caller's role; None when the caller is not a member."""
    return await tx.fetch_one(
        f"select {TEAM_COLUMNS} from team t join team_member m on m.team_id = t.id"
        " and m.user_id = %(user)s where t.id = %(team)s",
        {"user": user_id, "team": team_id},
    )


async def viewer(tx: Tx, user_id: UUID) -> Row | None:
    return await tx.fetch_one(
        "select id, email, display_name, created_at from app_user where id = %s", (user_id,)
    )


async def projects(tx: Tx, team_id: UUID, ids: Sequence[UUID]) -> dict[Any, Row]:
    rows = await tx.fetch_all(
        f"select {PROJECT_COLUMNS} from project p where p.team_id = %s"
        " and p.id = any(%s::uuid[]) and p.deleted_at is null",
        (team_id, list(ids)),
    )
    return _by_id(rows)


_TASKS_BY_ID = TASK_DECORATION.apply(
    f"select {TASK_COLUMNS} from task t{_LIVE_PROJECT}"
    " where t.team_id = %(team)s and t.id = any(%(ids)s::uuid[]) and t.deleted_at is null"
)
_TASK_BY_KEY = TASK_DECORATION.apply(
    f"select {TASK_COLUMNS} from task t{_LIVE_PROJECT} where t.team_id = %(team)s"
    " and lp.key = %(key)s and t.number = %(number)s and t.deleted_at is null"
)


async def tasks(tx: Tx, team_id: UUID, ids: Sequence[UUID]) -> dict[Any, Row]:
    """Live tasks of live projects (a deleted project's tasks are deleted with it, but a
    task read by id checks, like REST)."""
    rows = await tx.fetch_all(_TASKS_BY_ID, {"team": team_id, "ids": list(ids)})
    for row in rows:
        convert_task(row)
    return _by_id(rows)


async def task_by_key(tx: Tx, team_id: UUID, project_key: str, number: int) -> Row | None:
    row = await tx.fetch_one(_TASK_BY_KEY, {"team": team_id, "key": project_key, "number": number})
    if row is not None:
        convert_task(row)
    return row


async def descriptions(tx: Tx, team_id: UUID, ids: Sequence[UUID]) -> dict[Any, Row]:
    rows = await tx.fetch_all(
        "select id, description from task where team_id = %s and id = any(%s::uuid[])",
        (team_id, list(ids)),
    )
    return _by_id(rows)


async def statuses(tx: Tx, team_id: UUID, ids: Sequence[UUID]) -> dict[Any, Row]:
    rows = await tx.fetch_all(
        f"select {STATUS_COLUMNS} from status s where s.team_id = %s and s.id = any(%s::uuid[])",
        (team_id, list(ids)),
    )
    return _by_id(rows)

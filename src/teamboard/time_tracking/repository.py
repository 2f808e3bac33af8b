"""SQL for time entries and their totals (one statement per total)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from teamboard.db import Tx
from teamboard.kit.pagination import limit_clause

_COLUMNS = (
    "e.id, e.task_id, e.project_id, e.user_id, e.started_at, e.ended_at,"
    " floor(extract(epoch from e.ended_at - e.started_at))::bigint as duration_seconds,"
    " e.note, e.created_at, e.updated_at, e.version"
)
_LIVE_TASK = "join task t on t.team_id = e.team_id and t.id = e.task_id and t.deleted_at is null"


async def start_timer(
    tx: Tx, entry_id: UUID, task_id: UUID, user_id: UUID, note: str
) -> dict[str, Any] | None:
    """Start a timer on a live task; None when the task is not there or the user already
    has a running timer in the team (the partial unique index decides, under any
    concurrency: a second start waits for the first and then inserts nothing)."""
    return await tx.fetch_one(
        "insert into time_entry as e (team_id, id, project_id, task_id, user_id, started_at,"
        " note) select t.team_id, %(id)s, t.project_id, t.id, %(user)s, now(), %(note)s"
        " from task t where t.id = %(task)s and t.deleted_at is null"
        " on conflict (team_id, user_id) where ended_at is null do nothing"
        f" returning {_COLUMNS}",
        {"id": entry_id, "task": task_id, "user": user_id, "note": note},
    )


async def running_entry(tx: Tx, user_id: UUID) -> dict[str, Any] | None:
    """The user's running timer, even on a task deleted since (so it can still be stopped)."""
    return await tx.fetch_one(
        f"select {_COLUMNS} from time_entry e where e.user_id = %s and e.ended_at is null",
        (user_id,),
    )


async def stop_timer(tx: Tx, user_id: UUID, max_seconds: int) -> dict[str, Any] | None:
    """Stop the user's running timer now, or at ``max_seconds`` after its start when it
    ran longer (a forgotten timer); None when none runs."""
    return await tx.fetch_one(
        "update time_entry as e set ended_at = least(greatest(now(), e.started_at),"
        " e.started_at + %(max)s::int * interval '1 second')"
        " where e.user_id = %(user)s and e.ended_at is null"
        f" returning {_COLUMNS}",
        {"user": user_id, "max": max_seconds},
    )


async def insert_entry(tx: Tx, values: dict[str, Any]) -> dict[str, Any] | None:
    """A finished entry on a live task; None when the task is not there."""
    return await tx.fetch_one(
        "insert into time_entry as e (team_id, id, project_id, task_id, user_id, started_at,"
        " ended_at, note) select t.team_id, %(id)s, t.project_id, t.id, %(user)s,"
        " %(started_at)s, %(ended_at)s, %(note)s"
        " from task t where t.id = %(task)s and t.deleted_at is null"
        f" returning {_COLUMNS}",
        values,
    )


async def get_entry(tx: Tx, entry_id: UUID, *, lock: bool = False) -> dict[str, Any] | None:
    """The entry of a live task; ``lock``: locked until the end of the transaction (an edit
    writes back the fields it was not sent, which a stop committed meanwhile must not lose)."""
    locked = " for update of e" if lock else ""
    return await tx.fetch_one(
        f"select {_COLUMNS} from time_entry e {_LIVE_TASK} where e.id = %s{locked}", (entry_id,)
    )


async def update_entry(
    tx: Tx,
    entry_id: UUID,
    started_at: datetime,
    ended_at: datetime | None,
    note: str,
    version: int | None,
) -> dict[str, Any] | None:
    """The entry changed; only of ``version`` when given (None when it is gone)."""
    return await tx.fetch_one(
        "update time_entry as e set started_at = %(started_at)s, ended_at = %(ended_at)s,"
        " note = %(note)s where e.id = %(id)s"
        f" and (%(version)s::integer is null or e.version = %(version)s) returning {_COLUMNS}",
        {
            "id": entry_id,
            "started_at": started_at,
            "ended_at": ended_at,
            "note": note,
            "version": version,
        },
    )


async def delete_entry(tx: Tx, entry_id: UUID) -> bool:
    row = await tx.fetch_one("delete from time_entry where id = %s returning id", (entry_id,))
    return row is not None


async def list_entries(
    tx: Tx, filters: dict[str, Any], limit: int, after: tuple[datetime, UUID] | None
) -> list[dict[str, Any]]:
    """One page, newest start first; ``filters`` has task, project, user, from, to and
    running (each None for no filter)."""
    return await tx.fetch_all(*entries_query(filters, limit, after))


#: Entries count in a range by their start: ``from`` inclusive, ``to`` exclusive.
_RANGE = (("from", "e.started_at >= %(from)s"), ("to", "e.started_at < %(to)s"))
#: The filters of the entries list, each written into the statement only when given.
_FILTERS = (
    ("task", "e.task_id = %(task)s"),
    ("project", "e.project_id = %(project)s"),
    ("user", "e.user_id = %(user)s"),
    *_RANGE,
)


def entries_query(
    filters: dict[str, Any], limit: int, after: tuple[datetime, UUID] | None
) -> tuple[str, dict[str, Any]]:
    """The statement of :func:`list_entries` and its parameters: only the filters given
    and the cursor when there is one, rather than ``(%(x)s is null or ...)`` conditions
    that a generic plan can only apply to every entry of the team (see ``id_page_sql``)."""
    conditions: list[str] = []
    params: dict[str, Any] = {}
    for name, condition in _FILTERS:
        if filters.get(name) is not None:
            conditions.append(condition)
            params[name] = filters[name]
    running = filters.get("running")
    if running is not None:
        conditions.append("e.ended_at is null" if running else "e.ended_at is not null")
    if after is not None:
        conditions.append("(e.started_at, e.id) < (%(after_at)s, %(after_id)s::uuid)")
        params["after_at"], params["after_id"] = after
    where = f" where {' and '.join(conditions)}" if conditions else ""
    sql = (
        f"select {_COLUMNS} from time_entry e {_LIVE_TASK}{where}"
        f" order by e.started_at desc, e.id desc {limit_clause(limit + 1)}"
    )
    return sql, params


#: What each totals statement counts: the target row (none: 404), how its entries are
#: found, and how they are grouped (the column, the target's id name, the group's key
#: name, the breakdown's name).
_TOTALS: dict[str, tuple[str, str, str, str, str, str]] = {
    "task": (
        "select id from task where id = %(id)s and deleted_at is null",
        "and e.task_id = target.id",
        "e.user_id",
        "task_id",
        "user_id",
        "by_user",
    ),
    "project": (
        "select id from project where id = %(id)s and deleted_at is null",
        f"and e.project_id = target.id {_LIVE_TASK}",
        "e.user_id",
        "project_id",
        "user_id",
        "by_user",
    ),
    "user": (
        "select user_id as id from team_member where team_id = %(team)s and user_id = %(id)s",
        f"and e.user_id = target.id {_LIVE_TASK}"
        " join project p on p.team_id = e.team_id and p.id = e.project_id"
        " and p.deleted_at is null",
        "e.project_id",
        "user_id",
        "project_id",
        "by_project",
    ),
}


def totals_sql(of: Literal["task", "project", "user"], range_: Mapping[str, Any]) -> str:
    """The totals statement of a task, project or user with the bounds of ``range_`` that
    are given, and only those: under a generic plan, ``(%(from)s is null or ...)`` could
    not start an index at the bound (public so that the plan can be checked)."""
    bounds = tuple(bound for name, bound in _RANGE if range_.get(name) is not None)
    return _totals(of, bounds)


@functools.lru_cache(maxsize=16)
def _totals(of: str, bounds: tuple[str, ...]) -> str:
    """One statement: the target row, the total of its finished entries within ``bounds``,
    and the totals per group as a JSON array ordered by key."""
    target, source, group, id_name, key, breakdown = _TOTALS[of]
    within = "".join(f" and {bound}" for bound in bounds)
    return (
        f"with target as ({target}), groups as ("
        f" select {group} as key, count(*) as entry_count,"
        " floor(extract(epoch from sum(e.ended_at - e.started_at)))::bigint as total_seconds"
        f" from time_entry e join target on true {source}"
        f" where e.ended_at is not null{within} group by {group})"
        f" select target.id as {id_name},"
        " (select coalesce(sum(total_seconds), 0)::bigint from groups) as total_seconds,"
        " (select coalesce(sum(entry_count), 0)::bigint from groups) as entry_count,"
        f" (select coalesce(json_agg(json_build_object('{key}', key,"
        " 'total_seconds', total_seconds, 'entry_count', entry_count) order by key), '[]')"
        f" from groups) as {breakdown}"
        " from target"
    )


async def task_totals(tx: Tx, task_id: UUID, range_: dict[str, Any]) -> dict[str, Any] | None:
    return await tx.fetch_one(totals_sql("task", range_), {"id": task_id, **range_})


async def project_totals(tx: Tx, project_id: UUID, range_: dict[str, Any]) -> dict[str, Any] | None:
    return await tx.fetch_one(totals_sql("project", range_), {"id": project_id, **range_})


async def user_totals(
    tx: Tx, team_id: UUID, user_id: UUID, range_: dict[str, Any]
) -> dict[str, Any] | None:
    statement = totals_sql("user", range_)
    return await tx.fetch_one(statement, {"id": user_id, "team": team_id, **range_})

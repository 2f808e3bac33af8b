"""SQL for projects, their members and their default workflow."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from teamboard.db import Tx
from teamboard.kit.ids import new_id
from teamboard.kit.pagination import id_page_sql

_COLUMNS = (
    "id, key, name, description, visibility, archived_at, created_by, created_at, updated_at,"
    " version"
)

DEFAULT_WORKFLOW = (
    ("Backlog", "backlog"),
    ("Todo", "unstarted"),
    ("In Progress", "started"),
    ("Done", "completed"),
    ("Canceled", "canceled"),
)


async def insert_project(
    tx: Tx, project_id: UUID, key: str, name: str, description: str, visibility: str, user: UUID
) -> None:
    await tx.execute(
        "insert into project (id, key, name, description, visibility, created_by)"
        " values (%s, %s, %s, %s, %s, %s)",
        (project_id, key, name, description, visibility, user),
    )


async def insert_default_workflow(tx: Tx, project_id: UUID) -> None:
    await tx.execute(
        "insert into status (id, project_id, name, category, position)"
        " select * from unnest(%s::uuid[], %s::uuid[], %s::text[], %s::text[], %s::int[])",
        (
            [new_id() for _ in DEFAULT_WORKFLOW],
            [project_id] * len(DEFAULT_WORKFLOW),
            [name for name, _ in DEFAULT_WORKFLOW],
            [category for _, category in DEFAULT_WORKFLOW],
            [1000 * (i + 1) for i in range(len(DEFAULT_WORKFLOW))],
        ),
    )


async def get_project(tx: Tx, project_id: UUID) -> dict[str, Any] | None:
    return await tx.fetch_one(
        f"select {_COLUMNS} from project where id = %s and deleted_at is null", (project_id,)
    )


async def lock_project(tx: Tx, project_id: UUID) -> dict[str, Any] | None:
    """The live project, locked against concurrent updates until the transaction ends.

    ``FOR NO KEY UPDATE`` is the lock task creation takes when it allocates a number, so
    this also serializes task creation, manual ordering and hierarchy changes of the
    project (see the tasks service).
    """
    return await tx.fetch_one(
        f"select {_COLUMNS} from project where id = %s and deleted_at is null for no key update",
        (project_id,),
    )


async def list_projects(
    tx: Tx, limit: int, after: UUID | None, include_archived: bool
) -> list[dict[str, Any]]:
    """A page of the team's live projects by id (``limit + 1`` rows)."""
    return await tx.fetch_all(*page_query(limit, after, include_archived))


def page_query(
    limit: int, after: UUID | None, include_archived: bool
) -> tuple[str, dict[str, Any]]:
    """The statement of :func:`list_projects` and its parameters: archived or not is in the
    text too, so that each variant has its own plan (see ``id_page_sql``)."""
    live = ["deleted_at is null"] + ([] if include_archived else ["archived_at is null"])
    return id_page_sql(f"select {_COLUMNS} from project", live, "id", after, limit, {})


async def update_project(tx: Tx, project_id: UUID, changes: dict[str, Any]) -> None:
    """Apply ``changes`` and bump the version (the ETag)."""
    archived = changes.get("archived")
    await tx.execute(
        "update project set version = version + 1, name = coalesce(%(name)s, name),"
        " description = coalesce(%(description)s, description),"
        " visibility = coalesce(%(visibility)s, visibility),"
        " archived_at = case when %(archived)s::boolean is null then archived_at"
        "   when %(archived)s then coalesce(archived_at, now()) else null end"
        " where id = %(id)s and deleted_at is null",
        {
            "id": project_id,
            "name": changes.get("name"),
            "description": changes.get("description"),
            "visibility": changes.get("visibility"),
            "archived": archived,
        },
    )


async def soft_delete_project(tx: Tx, project_id: UUID) -> bool:
    """Soft-delete the project and, with the same stamp, its live tasks (so that task lists
    and reads need no project filter)."""
    row = await tx.fetch_one(
        "with gone as (update project set deleted_at = now()"
        " where id = %(id)s and deleted_at is null returning team_id, id),"
        " tasks as (update task t set deleted_at = now(), version = t.version + 1 from gone"
        " where t.team_id = gone.team_id and t.project_id = gone.id and t.deleted_at is null)"
        " select id from gone",
        {"id": project_id},
    )
    return row is not None


async def add_member(tx: Tx, project_id: UUID, user_id: UUID) -> dict[str, Any] | None:
    """Add a team member to the project; None when ``user_id`` is not a team member.

    No ``RETURNING``: the new row must pass the SELECT policy, whose visibility set was
    computed before this statement, so the first member of a private project is read back
    by the next statement instead.
    """
    await tx.execute(
        "insert into project_member (project_id, user_id)"
        " select %(project)s, m.user_id from team_member m"
        " where m.team_id = tb_current_team_id() and m.user_id = %(user)s"
        " on conflict do nothing",
        {"project": project_id, "user": user_id},
    )
    return await tx.fetch_one(
        "select pm.user_id, u.display_name, pm.created_at as added_at from project_member pm"
        " join app_user u on u.id = pm.user_id where pm.project_id = %s and pm.user_id = %s",
        (project_id, user_id),
    )


async def is_member(tx: Tx, project_id: UUID, user_id: UUID) -> bool:
    row = await tx.fetch_one(
        "select 1 from project_member where project_id = %s and user_id = %s",
        (project_id, user_id),
    )
    return row is not None


async def is_last_manager(tx: Tx, project_id: UUID, user_id: UUID) -> bool:
    """Whether ``user_id`` is the project's only member who is not a guest of the team (a
    member who can see the project and add members): a guest's removal never is."""
    return bool(
        await tx.fetch_value(
            "select exists (select 1 from team_member m where m.team_id = tb_current_team_id()"
            " and m.user_id = %(user)s and m.role <> 'guest')"
            " and not exists (select 1 from project_member pm join team_member m"
            " on m.team_id = pm.team_id and m.user_id = pm.user_id"
            " where pm.team_id = tb_current_team_id() and pm.project_id = %(project)s"
            " and pm.user_id <> %(user)s and m.role <> 'guest')",
            {"project": project_id, "user": user_id},
        )
    )


async def list_members(
    tx: Tx, project_id: UUID, limit: int, after: UUID | None
) -> list[dict[str, Any]]:
    sql, params = id_page_sql(
        "select pm.user_id, u.display_name, pm.created_at as added_at from project_member pm"
        " join app_user u on u.id = pm.user_id",
        ["pm.project_id = %(project)s"],
        "pm.user_id",
        after,
        limit,
        {"project": project_id},
    )
    return await tx.fetch_all(sql, params)


async def remove_member(tx: Tx, project_id: UUID, user_id: UUID) -> None:
    await tx.execute(
        "delete from project_member where project_id = %s and user_id = %s", (project_id, user_id)
    )

"""SQL for teams, members and invitations. Every query runs under the caller's RLS context."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from teamboard.db import Tx
from teamboard.kit.pagination import id_page_sql

_TEAM_WITH_ROLE = (
    "select t.id, t.name, t.time_zone, t.created_at, t.updated_at, t.version, m.role"
    " from team t"
    " join team_member m on m.team_id = t.id and m.user_id = %(user)s"
)


async def insert_team(
    tx: Tx, team_id: UUID, name: str, owner_id: UUID, time_zone: str = "UTC"
) -> None:
    """Insert the team and its first owner (the context must already name the team)."""
    await tx.execute(
        "insert into team (id, name, created_by, time_zone) values (%s, %s, %s, %s)",
        (team_id, name, owner_id, time_zone),
    )
    await tx.execute(
        "insert into team_member (team_id, user_id, role) values (%s, %s, 'owner')",
        (team_id, owner_id),
    )


async def get_team(tx: Tx, team_id: UUID, user_id: UUID) -> dict[str, Any] | None:
    """The team with the caller's role: None when the caller is not a member."""
    return await tx.fetch_one(
        _TEAM_WITH_ROLE + " where t.id = %(team)s", {"user": user_id, "team": team_id}
    )


async def list_teams(tx: Tx, user_id: UUID, limit: int, after: UUID | None) -> list[dict[str, Any]]:
    sql, params = id_page_sql(_TEAM_WITH_ROLE, [], "t.id", after, limit, {"user": user_id})
    return await tx.fetch_all(sql, params)


async def update_team(
    tx: Tx, team_id: UUID, name: str | None, time_zone: str | None, version: int | None
) -> bool:
    """Set the given fields (None: unchanged), of ``version`` only when given (False when
    the team is no longer at that version)."""
    row = await tx.fetch_one(
        "update team set name = coalesce(%(name)s, name),"
        " time_zone = coalesce(%(zone)s, time_zone)"
        " where id = %(id)s and (%(version)s::integer is null or version = %(version)s)"
        " returning id",
        {"name": name, "zone": time_zone, "id": team_id, "version": version},
    )
    return row is not None


async def is_time_zone(tx: Tx, name: str) -> bool:
    """Whether PostgreSQL knows the zone by this name (``pg_timezone_names`` reads the zone
    files: tens of milliseconds, fine for the rare change of a team's zone)."""
    return bool(
        await tx.fetch_value(
            "select exists (select 1 from pg_timezone_names where name = %s)", (name,)
        )
    )


async def delete_team(tx: Tx, team_id: UUID) -> bool:
    return await tx.fetch_one("delete from team where id = %s returning id", (team_id,)) is not None


async def lock_membership(tx: Tx, team_id: UUID) -> None:
    """Serialize membership changes of one team (the last-owner rule under concurrency)."""
    await tx.fetch_one(
        "select pg_advisory_xact_lock(hashtextextended(%s::uuid::text, 7))", (team_id,)
    )


async def private_projects_managed_only_by(tx: Tx, user_id: UUID) -> int:
    """How many private projects of the context team ``user_id`` is the last member of who
    is not a guest (a count only: the caller may not see them)."""
    return int(await tx.fetch_value("select tb_private_projects_managed_only_by(%s)", (user_id,)))


async def list_members(
    tx: Tx, team_id: UUID, limit: int, after: UUID | None
) -> list[dict[str, Any]]:
    sql, params = id_page_sql(
        "select m.user_id, u.email, u.display_name, m.role, m.created_at as joined_at,"
        " m.version from team_member m join app_user u on u.id = m.user_id",
        ["m.team_id = %(team)s"],
        "m.user_id",
        after,
        limit,
        {"team": team_id},
    )
    return await tx.fetch_all(sql, params)


async def get_member(tx: Tx, team_id: UUID, user_id: UUID) -> dict[str, Any] | None:
    """A member as the member routes answer it (role and version included)."""
    return await tx.fetch_one(
        "select m.user_id, u.email, u.display_name, m.role, m.created_at as joined_at,"
        " m.version from team_member m join app_user u on u.id = m.user_id"
        " where m.team_id = %s and m.user_id = %s",
        (team_id, user_id),
    )


async def get_member_role(tx: Tx, team_id: UUID, user_id: UUID) -> str | None:
    role: str | None = await tx.fetch_value(
        "select role from team_member where team_id = %s and user_id = %s", (team_id, user_id)
    )
    return role


async def count_owners(tx: Tx, team_id: UUID) -> int:
    return int(
        await tx.fetch_value(
            "select count(*) from team_member where team_id = %s and role = 'owner'", (team_id,)
        )
    )


async def set_member_role(tx: Tx, team_id: UUID, user_id: UUID, role: str) -> dict[str, Any] | None:
    return await tx.fetch_one(
        "with changed as (update team_member set role = %(role)s"
        " where team_id = %(team)s and user_id = %(user)s"
        " returning user_id, role, created_at, version)"
        " select c.user_id, u.email, u.display_name, c.role, c.created_at as joined_at,"
        " c.version"
        " from changed c join app_user u on u.id = c.user_id",
        {"team": team_id, "user": user_id, "role": role},
    )


async def delete_member(tx: Tx, team_id: UUID, user_id: UUID) -> None:
    await tx.execute(
        "delete from team_member where team_id = %s and user_id = %s", (team_id, user_id)
    )


async def is_member_email(tx: Tx, team_id: UUID, email: str) -> bool:
    return (
        await tx.fetch_one(
            "select 1 from team_member m join app_user u on u.id = m.user_id"
            " where m.team_id = %s and u.email = %s",
            (team_id, email),
        )
        is not None
    )


_INVITATION_COLUMNS = "id, email, role, expires_at, created_at, accepted_at, revoked_at"


async def replace_invitation(
    tx: Tx,
    *,
    team_id: UUID,
    invitation_id: UUID,
    email: str,
    role: str,
    token_hash: str,
    invited_by: UUID,
    expires_at: datetime,
) -> dict[str, Any]:
    """Revoke any pending invitation of the same email, then insert the new one."""
    await tx.execute(
        "update invitation set revoked_at = now() where team_id = %s and email = %s"
        " and accepted_at is null and revoked_at is null",
        (team_id, email),
    )
    row = await tx.fetch_one(
        "insert into invitation (team_id, id, email, role, token_hash, invited_by, expires_at)"
        f" values (%s, %s, %s, %s, %s, %s, %s) returning {_INVITATION_COLUMNS}",
        (team_id, invitation_id, email, role, token_hash, invited_by, expires_at),
    )
    assert row is not None
    return row


async def list_invitations(
    tx: Tx, team_id: UUID, limit: int, after: UUID | None
) -> list[dict[str, Any]]:
    sql, params = id_page_sql(
        f"select {_INVITATION_COLUMNS} from invitation",
        ["team_id = %(team)s", "accepted_at is null", "revoked_at is null"],
        "id",
        after,
        limit,
        {"team": team_id},
    )
    return await tx.fetch_all(sql, params)


async def revoke_invitation(tx: Tx, team_id: UUID, invitation_id: UUID) -> bool:
    row = await tx.fetch_one(
        "update invitation set revoked_at = now() where team_id = %s and id = %s"
        " and accepted_at is null and revoked_at is null returning id",
        (team_id, invitation_id),
    )
    return row is not None


async def find_invitation_by_token(tx: Tx, token_hash: str) -> dict[str, Any] | None:
    """Needs the ``app.invitation_token`` lookup set to ``token_hash``."""
    return await tx.fetch_one(
        "select team_id, id, email, role, expires_at, accepted_at, revoked_at"
        " from invitation where token_hash = %s",
        (token_hash,),
    )


async def join_by_invitation(
    tx: Tx, team_id: UUID, invitation_id: UUID, user_id: UUID, role: str
) -> None:
    await tx.execute(
        "insert into team_member (team_id, user_id, role) values (%s, %s, %s)",
        (team_id, user_id, role),
    )
    accepted = await tx.fetch_value("select tb_mark_invitation_accepted(%s)", (team_id,))
    if not accepted:  # the membership insert was allowed by this same pending invitation
        raise RuntimeError(f"invitation {invitation_id} could not be marked accepted")

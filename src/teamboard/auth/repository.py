"""SQL for users, auth sessions and refresh tokens."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from teamboard.db import Tx


async def insert_user(
    tx: Tx, user_id: UUID, email: str, display_name: str, password_hash: str
) -> bool:
    """Insert a user; False when the email is taken (nothing else is revealed)."""
    row = await tx.fetch_one(
        "insert into app_user (id, email, display_name, password_hash) values (%s, %s, %s, %s) "
        "on conflict (email) do nothing returning id",
        (user_id, email, display_name, password_hash),
    )
    return row is not None


async def find_login(tx: Tx, email: str) -> dict[str, Any] | None:
    """The account's id and password hash (the app role cannot read that column itself)."""
    return await tx.fetch_one("select id, password_hash from tb_login_lookup(%s)", (email,))


async def update_password_hash(tx: Tx, user_id: UUID, password_hash: str) -> None:
    await tx.execute(
        "update app_user set password_hash = %s where id = %s", (password_hash, user_id)
    )


async def get_me(tx: Tx, user_id: UUID) -> dict[str, Any] | None:
    return await tx.fetch_one(
        "select id, email, display_name, created_at from app_user where id = %s", (user_id,)
    )


async def create_session(
    tx: Tx,
    *,
    user_id: UUID,
    session_id: UUID,
    token_id: UUID,
    expires_at: datetime,
    user_agent: str | None,
    ip: str | None,
) -> None:
    await tx.execute(
        "insert into auth_session (user_id, id, expires_at, user_agent, ip) "
        "values (%s, %s, %s, %s, %s)",
        (user_id, session_id, expires_at, user_agent, ip),
    )
    await insert_refresh_token(tx, user_id, session_id, token_id, expires_at)


async def insert_refresh_token(
    tx: Tx, user_id: UUID, session_id: UUID, token_id: UUID, expires_at: datetime
) -> None:
    await tx.execute(
        "insert into refresh_token (user_id, id, session_id, expires_at) values (%s, %s, %s, %s)",
        (user_id, token_id, session_id, expires_at),
    )


async def use_refresh_token(
    tx: Tx, user_id: UUID, session_id: UUID, token_id: UUID
) -> tuple[bool, bool]:
    """Mark the token used if it is fresh and its session live: (rotated, token_known).

    A known token that cannot be rotated has been used before (or its family revoked):
    the caller treats that as reuse.
    """
    row = await tx.fetch_one(
        "with rotated as ("
        " update refresh_token r set used_at = now() from auth_session s"
        " where r.user_id = %(user)s and r.id = %(token)s and r.session_id = %(session)s"
        " and r.used_at is null and r.expires_at > now()"
        " and s.user_id = r.user_id and s.id = r.session_id"
        " and s.revoked_at is null and s.expires_at > now()"
        " returning r.id)"
        " select exists (select 1 from rotated) as rotated,"
        " exists (select 1 from refresh_token where user_id = %(user)s and id = %(token)s"
        " and session_id = %(session)s) as known",
        {"user": user_id, "token": token_id, "session": session_id},
    )
    assert row is not None
    return bool(row["rotated"]), bool(row["known"])


async def touch_session(tx: Tx, user_id: UUID, session_id: UUID) -> None:
    await tx.execute(
        "update auth_session set last_used_at = now() where user_id = %s and id = %s",
        (user_id, session_id),
    )


async def revoke_session(tx: Tx, user_id: UUID, session_id: UUID, reason: str) -> None:
    await tx.execute(
        "update auth_session set revoked_at = coalesce(revoked_at, now()),"
        " revoked_reason = coalesce(revoked_reason, %s) where user_id = %s and id = %s",
        (reason, user_id, session_id),
    )

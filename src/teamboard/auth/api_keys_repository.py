"""SQL for team API keys (management; resolution is in ``api_keys.py``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from teamboard.db import Tx
from teamboard.kit.pagination import id_page_sql

_COLUMNS = "id, name, prefix, scopes, created_by, expires_at, last_used_at, revoked_at, created_at"


async def insert_key(
    tx: Tx,
    *,
    key_id: UUID,
    name: str,
    prefix: str,
    secret_hash: str,
    scopes: list[str],
    created_by: UUID,
    expires_at: datetime | None,
) -> dict[str, Any]:
    row = await tx.fetch_one(
        "insert into api_key (id, name, prefix, secret_hash, scopes, created_by, expires_at)"
        f" values (%s, %s, %s, %s, %s, %s, %s) returning {_COLUMNS}",
        (key_id, name, prefix, secret_hash, scopes, created_by, expires_at),
    )
    assert row is not None
    return row


async def list_keys(tx: Tx, team_id: UUID, limit: int, after: UUID | None) -> list[dict[str, Any]]:
    sql, params = id_page_sql(
        f"select {_COLUMNS} from api_key",
        ["team_id = %(team)s"],
        "id",
        after,
        limit,
        {"team": team_id},
    )
    return await tx.fetch_all(sql, params)


async def revoke_key(tx: Tx, team_id: UUID, key_id: UUID) -> bool:
    row = await tx.fetch_one(
        "update api_key set revoked_at = coalesce(revoked_at, now())"
        " where team_id = %s and id = %s returning id",
        (team_id, key_id),
    )
    return row is not None

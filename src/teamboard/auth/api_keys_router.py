"""REST routes: /teams/{team_id}/api-keys (admins only; the token is shown once)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field, StringConstraints

from teamboard.auth.api_keys import generate_api_key
from teamboard.auth.schemas import Strict
from teamboard.deps import ServicesDep, TeamCtx
from teamboard.errors import NotFound
from teamboard.events.repository import append
from teamboard.kit.ids import new_id
from teamboard.kit.pagination import Limit, uuid_after
from teamboard.kit.responses import ORJSONResponse

router = APIRouter(prefix="/teams/{team_id}/api-keys", tags=["api-keys"])
Scope = Literal["read", "write", "admin"]
_COLUMNS = "id, name, prefix, scopes, created_by, expires_at, last_used_at, revoked_at, created_at"


class ApiKeyIn(Strict):
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    scopes: Annotated[list[Scope], Field(min_length=1, max_length=3)] = ["read"]
    expires_at: datetime | None = None


class ApiKeyOut(BaseModel):
    id: UUID
    name: str
    prefix: str
    scopes: list[Scope]
    created_by: UUID
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None
    created_at: datetime
    token: str | None = None


class ApiKeyList(BaseModel):
    items: list[ApiKeyOut]
    next_cursor: str | None


@router.post("", status_code=201, response_model=ApiKeyOut)
async def create_api_key(body: ApiKeyIn, ctx: TeamCtx) -> Response:
    await ctx.require("admin")
    key = generate_api_key()
    row = await ctx.tx.fetch_one(
        "insert into api_key (id, name, prefix, secret_hash, scopes, created_by, expires_at)"
        f" values (%s, %s, %s, %s, %s, %s, %s) returning {_COLUMNS}",
        (new_id(), body.name, key.prefix, key.secret_hash, sorted(set(body.scopes)),
         ctx.user_id, body.expires_at),
    )
    assert row is not None
    await append(ctx.tx, "api_key.created", subject_id=row["id"], payload={"scopes": row["scopes"]})
    return ORJSONResponse({**row, "token": key.token}, status_code=201)


@router.get("", response_model=ApiKeyList)
async def list_api_keys(
    ctx: TeamCtx, services: ServicesDep, limit: Limit = 50, cursor: str | None = None
) -> Response:
    await ctx.require("admin")
    scope = f"api-keys:{ctx.team_id}"
    after = uuid_after(services.cursors.page(scope, {}, limit, cursor))
    rows = await ctx.tx.fetch_all(
        f"select {_COLUMNS} from api_key where team_id = %(team)s"
        " and (%(after)s::uuid is null or id > %(after)s) order by id limit %(limit)s",
        {"team": ctx.team_id, "after": after, "limit": limit + 1},
    )
    cursor_out = services.cursors.next_cursor(scope, {}, rows, limit, ["id"])
    return ORJSONResponse({"items": rows, "next_cursor": cursor_out})


@router.delete("/{key_id}", status_code=204)
async def revoke_api_key(key_id: UUID, ctx: TeamCtx) -> Response:
    await ctx.require("admin")
    row = await ctx.tx.fetch_one(
        "update api_key set revoked_at = coalesce(revoked_at, now())"
        " where team_id = %s and id = %s returning id",
        (ctx.team_id, key_id),
    )
    if row is None:
        raise NotFound()
    await append(ctx.tx, "api_key.revoked", subject_id=key_id)
    return Response(status_code=204)

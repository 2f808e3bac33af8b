"""REST routes: /teams/{team_id}/api-keys (admins only; the token is shown once)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Response
from pydantic import AfterValidator, BaseModel, Field, StringConstraints

from teamboard.auth import api_keys_repository as repository
from teamboard.auth.api_keys import generate_api_key
from teamboard.auth.schemas import Strict
from teamboard.deps import ServicesDep, TeamCtx
from teamboard.errors import NotFound
from teamboard.events.repository import append
from teamboard.idempotency import returns_secret
from teamboard.kit.ids import new_id
from teamboard.kit.instants import within_range
from teamboard.kit.pagination import DEFAULT_LIMIT, Limit
from teamboard.kit.responses import ORJSONResponse
from teamboard.kit.text import NO_NUL

router = APIRouter(prefix="/teams/{team_id}/api-keys", tags=["api-keys"])
Scope = Literal["read", "write", "admin"]


def _read_only() -> list[Scope]:
    return ["read"]


class ApiKeyIn(Strict):
    name: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), NO_NUL
    ]
    scopes: Annotated[list[Scope], Field(min_length=1, max_length=3)] = Field(
        default_factory=_read_only
    )
    expires_at: Annotated[datetime, AfterValidator(within_range)] | None = None


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
@returns_secret
async def create_api_key(body: ApiKeyIn, ctx: TeamCtx) -> Response:
    """Create a key; its token is shown once, in this answer, and stored only hashed."""
    await ctx.require("admin")
    key = generate_api_key()
    row = await repository.insert_key(
        ctx.tx,
        key_id=new_id(),
        name=body.name,
        prefix=key.prefix,
        secret_hash=key.secret_hash,
        scopes=sorted(set(body.scopes)),
        created_by=ctx.user_id,
        expires_at=body.expires_at,
    )
    await append(ctx.tx, "api_key.created", subject_id=row["id"], payload={"scopes": row["scopes"]})
    return ORJSONResponse({**row, "token": key.token}, status_code=201)


@router.get("", response_model=ApiKeyList)
async def list_api_keys(
    ctx: TeamCtx, services: ServicesDep, limit: Limit = DEFAULT_LIMIT, cursor: str | None = None
) -> Response:
    await ctx.require("admin")
    page = await services.cursors.id_page(
        f"api-keys:{ctx.team_id}",
        limit,
        cursor,
        lambda n, after: repository.list_keys(ctx.tx, ctx.team_id, n, after),
    )
    return ORJSONResponse(page)


@router.delete("/{key_id}", status_code=204)
async def revoke_api_key(key_id: UUID, ctx: TeamCtx) -> Response:
    await ctx.require("admin")
    if not await repository.revoke_key(ctx.tx, ctx.team_id, key_id):
        raise NotFound()
    await append(ctx.tx, "api_key.revoked", subject_id=key_id)
    return Response(status_code=204)

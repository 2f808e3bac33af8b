"""REST routes: /auth/* and /me."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from teamboard.auth import repository, service
from teamboard.auth.schemas import Accepted, LoginIn, Me, RefreshIn, RegisterIn, TokenPair
from teamboard.deps import PublicTx, ServicesDep, UserTx
from teamboard.errors import NotFound

router = APIRouter(tags=["auth"])


def _client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@router.post("/auth/register", status_code=202, response_model=Accepted)
async def register(body: RegisterIn, services: ServicesDep, tx: PublicTx) -> Accepted:
    """Create an account. The answer is the same whether or not the email was taken."""
    await service.register(services, tx, body)
    return Accepted(detail="If this email can be registered, the account is ready: sign in.")


@router.post("/auth/login", response_model=TokenPair)
async def login(body: LoginIn, request: Request, services: ServicesDep, tx: PublicTx) -> TokenPair:
    ip = _client_ip(request)
    user_id = await service.verify_credentials(services, tx, body.email, body.password, ip)
    return await service.start_session(services, tx, user_id, request.headers.get("user-agent"), ip)


@router.post("/auth/refresh", response_model=TokenPair)
async def refresh(body: RefreshIn, services: ServicesDep, tx: PublicTx) -> TokenPair:
    return await service.refresh(services, tx, body.refresh_token)


@router.post("/auth/logout", status_code=204)
async def logout(ctx: UserTx) -> Response:
    """Revoke the session (its whole refresh-token family) of the access token used."""
    await service.logout(ctx.tx, ctx.user_id, ctx.session_id)
    return Response(status_code=204)


@router.get("/me", response_model=Me)
async def me(ctx: UserTx) -> Me:
    row = await repository.get_me(ctx.tx, ctx.user_id)
    if row is None:
        raise NotFound()
    return Me(**row)

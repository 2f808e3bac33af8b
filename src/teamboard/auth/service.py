"""Registration, login, refresh-token rotation with reuse detection, and logout."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

from teamboard.auth import repository
from teamboard.auth.passwords import check_password_policy
from teamboard.auth.schemas import RegisterIn, TokenPair
from teamboard.db import Tx
from teamboard.deps import Services
from teamboard.errors import Unauthorized
from teamboard.kit.ids import new_id


def normalize_email(email: str) -> str:
    return email.strip().lower()


async def register(services: Services, tx: Tx, body: RegisterIn) -> None:
    """Create the account unless the email is taken; the caller cannot tell which."""
    email = normalize_email(body.email)
    check_password_policy(body.password, email=email)
    password_hash = await services.hasher.hash(body.password)
    user_id = new_id()
    await tx.set_context(user_id=user_id, team_id=None)
    await repository.insert_user(tx, user_id, email, body.display_name, password_hash)


async def verify_credentials(
    services: Services, tx: Tx, email: str, password: str, ip: str
) -> UUID:
    """The user id for a correct email and password; 401 otherwise, the same either way."""
    email = normalize_email(email)
    await services.throttle.check(email, ip)
    row = await repository.find_login(tx, email)
    if not await services.hasher.verify(row["password_hash"] if row else None, password):
        await services.throttle.record_failure(email, ip)
        raise Unauthorized("The email or password is incorrect", code="invalid_credentials")
    assert row is not None
    await services.throttle.record_success(email, ip)
    user_id: UUID = row["id"]
    if services.hasher.needs_rehash(row["password_hash"]):
        await tx.set_context(user_id=user_id, team_id=None)
        await repository.update_password_hash(tx, user_id, await services.hasher.hash(password))
    return user_id


async def start_session(
    services: Services, tx: Tx, user_id: UUID, user_agent: str | None, ip: str | None
) -> TokenPair:
    session_id, token_id = new_id(), new_id()
    expires_at = datetime.now(UTC) + timedelta(seconds=services.tokens.refresh_ttl)
    await tx.set_context(user_id=user_id, team_id=None)
    await repository.create_session(
        tx,
        user_id=user_id,
        session_id=session_id,
        token_id=token_id,
        expires_at=expires_at,
        user_agent=(user_agent or "")[:500] or None,
        ip=ip,
    )
    return _pair(services, user_id, session_id, token_id)


async def refresh(services: Services, tx: Tx, refresh_token: str) -> TokenPair:
    """Rotate a refresh token. Presenting one that was already used revokes its family."""
    claims = services.tokens.verify_refresh(refresh_token)
    await tx.set_context(user_id=claims.user_id, team_id=None)
    rotated, known = await repository.use_refresh_token(
        tx, claims.user_id, claims.session_id, claims.token_id
    )
    if not rotated:
        if known:
            await repository.revoke_session(
                tx, claims.user_id, claims.session_id, "refresh_token_reuse"
            )
            error = Unauthorized(
                "This refresh token was already used; the session has been revoked",
                code="refresh_token_reused",
            )
            error.keep_changes = True
            raise error
        raise Unauthorized("The token is invalid or expired", code="invalid_token")
    token_id = new_id()
    expires_at = datetime.now(UTC) + timedelta(seconds=services.tokens.refresh_ttl)
    await repository.insert_refresh_token(
        tx, claims.user_id, claims.session_id, token_id, expires_at
    )
    await repository.touch_session(tx, claims.user_id, claims.session_id)
    return _pair(services, claims.user_id, claims.session_id, token_id)


async def logout(tx: Tx, user_id: UUID, session_id: UUID | None) -> None:
    if session_id is not None:
        await repository.revoke_session(tx, user_id, session_id, "logout")


def _pair(services: Services, user_id: UUID, session_id: UUID, token_id: UUID) -> TokenPair:
    return TokenPair(
        access_token=services.tokens.issue_access(user_id, session_id),
        refresh_token=services.tokens.issue_refresh(user_id, session_id, token_id),
        expires_in=services.tokens.access_ttl,
    )

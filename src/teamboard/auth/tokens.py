"""JWT access and refresh tokens.

Access and refresh tokens are signed with different keys derived from SECRET_KEY, carry
different ``typ`` headers and audiences, and are verified with an algorithm allow-list, so
``alg: none``, algorithm confusion, a refresh token used as an access token, an expired or
foreign token are all refused alike with 401.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from uuid import UUID

import jwt

from teamboard.config import Settings
from teamboard.errors import Unauthorized
from teamboard.kit.ids import parse_uuid

ALGORITHM = "HS256"
ACCESS_TYP = "at+jwt"
REFRESH_TYP = "rt+jwt"
VERIFIED_CACHE_SIZE = 10_000


@dataclass(frozen=True)
class AccessClaims:
    user_id: UUID
    session_id: UUID


@dataclass(frozen=True)
class RefreshClaims:
    user_id: UUID
    session_id: UUID
    token_id: UUID


class TokenService:
    def __init__(self, settings: Settings) -> None:
        self._access_key = settings.derived_key("jwt-access")
        self._refresh_key = settings.derived_key("jwt-refresh")
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._refresh_audience = f"{settings.jwt_audience}:refresh"
        self.access_ttl = settings.access_token_ttl_seconds
        self.refresh_ttl = settings.refresh_token_ttl_seconds
        self._verified: dict[str, tuple[AccessClaims, float]] = {}

    def issue_access(self, user_id: UUID, session_id: UUID) -> str:
        now = int(time.time())
        claims = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": str(user_id),
            "sid": str(session_id),
            "iat": now,
            "exp": now + self.access_ttl,
        }
        return jwt.encode(claims, self._access_key, ALGORITHM, headers={"typ": ACCESS_TYP})

    def issue_refresh(self, user_id: UUID, session_id: UUID, token_id: UUID) -> str:
        now = int(time.time())
        claims = {
            "iss": self._issuer,
            "aud": self._refresh_audience,
            "sub": str(user_id),
            "sid": str(session_id),
            "jti": str(token_id),
            "iat": now,
            "exp": now + self.refresh_ttl,
        }
        return jwt.encode(claims, self._refresh_key, ALGORITHM, headers={"typ": REFRESH_TYP})

    def _decode(self, token: str, key: bytes, typ: str, audience: str) -> dict[str, object]:
        try:
            header = jwt.get_unverified_header(token)
            if header.get("typ") != typ or header.get("alg") != ALGORITHM:
                raise jwt.InvalidTokenError("unexpected token type or algorithm")
            claims: dict[str, object] = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=audience,
                issuer=self._issuer,
                options={"require": ["exp", "iat", "iss", "aud", "sub", "sid"]},
            )
        except jwt.PyJWTError as exc:
            raise Unauthorized("The token is invalid or expired", code="invalid_token") from exc
        return claims

    def verify_access(self, token: str) -> AccessClaims:
        """Verify an access token; a token verified before is answered from a small cache
        until its own expiry (decoding and checking a JWT is a sizeable share of a read)."""
        return self.verify_access_until(token)[0]

    def verify_access_until(self, token: str) -> tuple[AccessClaims, float]:
        """:meth:`verify_access`, and when the token expires (Unix time): what a connection
        that outlives its request (the realtime feed) must end at."""
        cached = self._verified.get(token)
        if cached is not None and cached[1] > time.time():
            return cached
        claims = self._decode(token, self._access_key, ACCESS_TYP, self._audience)
        try:
            result = AccessClaims(parse_uuid(str(claims["sub"])), parse_uuid(str(claims["sid"])))
        except ValueError as exc:
            raise Unauthorized("The token is invalid", code="invalid_token") from exc
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            self._verified.clear()
        expires = float(claims["exp"])  # type: ignore[arg-type]
        self._verified[token] = (result, expires)
        return result, expires

    def verify_refresh(self, token: str) -> RefreshClaims:
        claims = self._decode(token, self._refresh_key, REFRESH_TYP, self._refresh_audience)
        try:
            return RefreshClaims(
                UUID(str(claims["sub"])), UUID(str(claims["sid"])), UUID(str(claims["jti"]))
            )
        except (KeyError, ValueError) as exc:
            raise Unauthorized("The token is invalid", code="invalid_token") from exc

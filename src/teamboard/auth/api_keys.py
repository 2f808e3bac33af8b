"""Team API keys: ``tb_<prefix>_<secret>``, stored as the prefix and a SHA-256 of the secret.

The secret has 256 bits of entropy, so a fast hash is safe here (unlike passwords). A key
is resolved inside the request transaction: its prefix and secret hash are exposed to Row
Level Security as lookup keys, so only the row matching both is readable (a prefix alone
shows nothing), then the caller becomes the member who created the key, and RLS applies to
them as usual. Its use is recorded by ``tb_touch_api_key``; no lookup allows an update.
"""

from __future__ import annotations

import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

from teamboard.db import Tx
from teamboard.errors import NotFound, Unauthorized
from teamboard.kit.secrets import hash_token

_KEY_FORMAT = re.compile(r"^tb_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")


@dataclass(frozen=True)
class ApiKeyCredential:
    prefix: str
    secret: str


@dataclass(frozen=True)
class ApiKeyGrant:
    key_id: UUID
    user_id: UUID
    scopes: frozenset[str]
    team_id: UUID


@dataclass(frozen=True)
class NewApiKey:
    token: str
    prefix: str
    secret_hash: str


def generate_api_key() -> NewApiKey:
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    return NewApiKey(f"tb_{prefix}_{secret}", prefix, hash_token(secret))


def parse_api_key(token: str) -> ApiKeyCredential:
    match = _KEY_FORMAT.match(token)
    if match is None:
        raise Unauthorized("The API key is invalid", code="invalid_api_key")
    return ApiKeyCredential(match.group(1), match.group(2))


async def resolve_api_key(
    tx: Tx, credential: ApiKeyCredential, team_id: UUID | None
) -> ApiKeyGrant:
    """Authenticate the key and switch the transaction's context to its creator and team.

    A valid key for another team answers 404, like any team the caller cannot see;
    ``team_id=None`` accepts the key's own team (GraphQL requests name no team up front).
    """
    secret_hash = hash_token(credential.secret)
    await tx.set_lookup("app.api_key_prefix", credential.prefix)
    await tx.set_lookup("app.api_key_secret_hash", secret_hash)
    row = await tx.fetch_one(
        "select team_id, id, secret_hash, scopes, created_by, expires_at, revoked_at "
        "from api_key where prefix = %s",
        (credential.prefix,),
    )
    now = datetime.now(UTC)
    if (
        row is None
        or not hmac.compare_digest(row["secret_hash"], secret_hash)
        or row["revoked_at"] is not None
        or (row["expires_at"] is not None and row["expires_at"] <= now)
    ):
        raise Unauthorized("The API key is invalid, expired or revoked", code="invalid_api_key")
    if team_id is not None and row["team_id"] != team_id:
        raise NotFound()
    await tx.execute("select tb_touch_api_key(%s, %s)", (credential.prefix, secret_hash))
    await tx.set_lookup("app.api_key_prefix", "")
    await tx.set_lookup("app.api_key_secret_hash", "")
    await tx.set_context(user_id=row["created_by"], team_id=row["team_id"])
    return ApiKeyGrant(row["id"], row["created_by"], frozenset(row["scopes"]), row["team_id"])
